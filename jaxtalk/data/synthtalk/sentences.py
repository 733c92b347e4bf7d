"""What SynthTalk's text-to-speech clips say, in which voices, and how they are spoken.

Short everyday sentences in five languages, spoken by espeak-ng (`tts`) in the language's voices
(dialects) with one of `VARIANTS` (espeak's speaker variants: sex, pitch, timbre). The eval split
holds out every fourth sentence of each language and every fourth variant, so a held-out clip is
a sentence never heard in training, in a voice never heard in training. A clip strings sentences
together with short pauses until its length is filled.
"""

import dataclasses

import numpy as np

from jaxtalk.data.synthtalk import speech, tts
from jaxtalk.timebase import SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class Language:
  voices: tuple[str, ...]  # espeak voices (dialects) that speak it
  sentences: tuple[str, ...]


LANGUAGES = {
  "en": Language(
    ("en", "en-us"),
    (
      "The weather is lovely this morning.",
      "Please pass me the butter and the bread.",
      "My brother bought a new blue bike.",
      "We walked along the river after lunch.",
      "Could you open the window a little?",
      "The market is busy on Saturday mornings.",
      "She keeps her old books in a big box.",
      "Maybe we can meet at the park at five.",
      "The train to Boston leaves at noon.",
      "I forgot my umbrella at home again.",
      "Paul plays the piano beautifully.",
      "Turn left at the bakery, then go straight on.",
      "Our garden is full of purple flowers.",
      "How much does a cup of coffee cost here?",
      "The children laughed at the funny movie.",
      "Bring a warm jacket, it might rain later.",
    ),
  ),
  "de": Language(
    ("de",),
    (
      "Heute scheint die Sonne über der Stadt.",
      "Wir fahren am Montag mit dem Zug nach Berlin.",
      "Mein Bruder spielt jeden Abend Gitarre.",
      "Kannst du mir bitte das Salz geben?",
      "Der Bäcker an der Ecke hat frische Brötchen.",
      "Im Sommer schwimmen wir gern im See.",
      "Das Museum öffnet um zehn Uhr.",
      "Meine Oma backt den besten Apfelkuchen.",
      "Wo ist der nächste Bahnhof, bitte?",
      "Die Kinder spielen draußen im Garten.",
      "Ich trinke morgens immer einen Kaffee.",
      "Am Wochenende besuchen wir unsere Freunde.",
      "Der Hund schläft auf dem blauen Sofa.",
      "Hast du das neue Buch schon gelesen?",
      "Wir müssen noch Milch und Butter kaufen.",
      "Im Winter ist es hier sehr kalt.",
    ),
  ),
  "fr": Language(
    ("fr", "fr-be"),
    (
      "Il fait très beau aujourd'hui.",
      "Nous prenons le petit déjeuner à huit heures.",
      "Mon père aime beaucoup la musique.",
      "Pouvez-vous m'aider, s'il vous plaît ?",
      "La boulangerie ouvre à sept heures.",
      "Les enfants jouent dans le jardin.",
      "Je voudrais un café au lait, merci.",
      "Le train pour Paris part à midi.",
      "Ma sœur habite près de la mer.",
      "On se retrouve devant le musée ?",
      "Il pleut depuis ce matin.",
      "Le chat dort sur le canapé bleu.",
      "Nous avons mangé une bonne soupe.",
      "Où est la bibliothèque, s'il vous plaît ?",
      "Mon ami parle trois langues.",
      "Bonne nuit, à demain matin.",
    ),
  ),
  "es": Language(
    ("es", "es-419"),
    (
      "Hoy hace mucho calor en la playa.",
      "Mi madre prepara una paella muy buena.",
      "¿Dónde está la estación de autobuses?",
      "Los niños juegan en el parque.",
      "Mañana vamos a visitar a mis abuelos.",
      "Me gusta pasear por la montaña.",
      "El perro duerme debajo de la mesa.",
      "¿Puedes abrir la ventana, por favor?",
      "Compramos pan y fruta en el mercado.",
      "Mi hermano toca la guitarra muy bien.",
      "La biblioteca abre a las nueve.",
      "Bebemos café por la mañana.",
      "El museo está cerca del puerto.",
      "Vamos al cine el sábado por la noche.",
      "Tengo un gato blanco y un pájaro azul.",
      "Buenas noches, hasta mañana.",
    ),
  ),
  "it": Language(
    ("it",),
    (
      "Oggi il cielo è molto blu.",
      "Mia madre prepara la pasta ogni domenica.",
      "Dove si trova la stazione, per favore?",
      "I bambini giocano nel parco.",
      "Domani andiamo al mare con gli amici.",
      "Mi piace molto la musica classica.",
      "Il gatto dorme sopra il divano.",
      "Prendiamo un caffè al bar?",
      "Mio padre lavora in una banca.",
      "La biblioteca apre alle nove.",
      "Abbiamo comprato pane e formaggio.",
      "Il treno per Roma parte a mezzogiorno.",
      "Mia sorella suona il pianoforte.",
      "Buona sera, come stai?",
      "Il museo è chiuso il lunedì.",
      "Piove da questa mattina.",
    ),
  ),
}

# espeak's speaker variants, appended to a voice as "+name", ordered so that the eval split's (every
# fourth) has women, men and the Klatt synthesizer. Left out: variants with an echo
# (m2, f2-f5), which fills the silent stop closures `tts` finds the stops by; those on the "klatt 6"
# engine, whose noise comes from libc's unseeded rand(); and the whispered ones, whose vowels are
# unvoiced.
VARIANTS = (
  "m1", "f1", "m3", "Annie",
  "m4", "aunty", "klatt", "m5",
  "belinda", "m6", "grandma", "klatt2",
  "m7", "linda", "Andy", "steph",
  "Denis", "anika", "klatt3", "m8",
)  # fmt: skip

# Every fourth sentence and variant is the eval split's; the train split speaks the rest.
_EVAL_EVERY = 4


def _in_split(index: int, split: str) -> bool:
  held_out = index % _EVAL_EVERY == _EVAL_EVERY - 1
  return {"train": not held_out, "eval": held_out}.get(split, True)


def sentence_ids(language: str, split: str) -> list[int]:
  """Indices into the language's sentences that `split` speaks ("custom": all of them)."""
  return [i for i in range(len(LANGUAGES[language].sentences)) if _in_split(i, split)]


def variants(split: str) -> list[str]:
  """The speaker variants of `split` ("custom": all of them)."""
  return [v for i, v in enumerate(VARIANTS) if _in_split(i, split)]


# espeak settings before the emotion: speaking rate (words per minute), pitch and pitch range.
_RATE_WPM = (140.0, 190.0)
_PITCH = (35.0, 65.0)
_PITCH_RANGE = (35.0, 65.0)
# How the emotion moves espeak's pitch (0-100) per octave of the emotion's mean f0 over neutral.
_PITCH_PER_OCTAVE = 40.0
# Silence before the first sentence and between sentences, in seconds.
_LEAD_IN_S = (0.1, 0.35)
_SENTENCE_GAP_S = (0.25, 0.6)


@dataclasses.dataclass(frozen=True)
class TtsUtterance:
  audio: np.ndarray  # [num_samples] float32, peak speech.PEAK
  events: list[tts.PhonemeEvent]  # in time order, pauses between sentences not included
  language: str
  voice: str  # espeak voice and variant, e.g. "en-us+f3"
  sentence_ids: list[str]  # "<language>-<index>", in the order spoken
  rate_wpm: int
  pitch: int
  pitch_range: int


def synthesize_utterance(
  utterance_seed: int,
  num_samples: int,
  emotion: str,
  split: str,
  prosody_seed: int,
  intensity: float = 1.0,
) -> TtsUtterance:
  """Sentences of one language in one voice, cut to exactly `num_samples` at 16 kHz.

  What is said and by which voice comes from `utterance_seed`, within `split`'s sentences and
  variants; how fast and at what pitch from `prosody_seed`, shifted by the emotion (its speaking
  rate and pitch in `speech.EMOTION_STYLES`, at `intensity`). A phoneme cut by the end of the clip is kept, ending
  there.
  """
  content = np.random.default_rng([utterance_seed, 0x775])
  language = list(LANGUAGES)[int(content.integers(len(LANGUAGES)))]
  dialects = LANGUAGES[language].voices
  split_variants = variants(split)
  voice = (
    f"{dialects[int(content.integers(len(dialects)))]}"
    f"+{split_variants[int(content.integers(len(split_variants)))]}"
  )
  order = content.permutation(sentence_ids(language, split))

  prosody = np.random.default_rng([prosody_seed, 0x775])
  style = speech.emotion_style(emotion, intensity)
  neutral = speech.EMOTION_STYLES["neutral"]
  rate_wpm = int(round(prosody.uniform(*_RATE_WPM) * style.rate))
  pitch = prosody.uniform(*_PITCH) + _PITCH_PER_OCTAVE * np.log2(style.pitch_hz / neutral.pitch_hz)
  # The emotion's range in semitones moves espeak's 0-100 range sub-linearly: twice the semitones
  # at twice the setting would already sound exaggerated.
  pitch_range = prosody.uniform(*_PITCH_RANGE) * np.sqrt(
    style.pitch_range_st / neutral.pitch_range_st
  )
  pitch, pitch_range = (int(round(np.clip(x, 0, 100))) for x in (pitch, pitch_range))

  pieces, events, spoken = [], [], []
  filled = int(round(prosody.uniform(*_LEAD_IN_S) * SAMPLE_RATE))
  pieces.append(np.zeros(filled, np.float32))
  end_s = num_samples / SAMPLE_RATE
  spoken_count = 0
  while filled < num_samples:
    # A long clip may need more sentences than the split holds: it goes round them again.
    index = int(order[spoken_count % len(order)])
    spoken_count += 1
    audio, sentence_events = tts.speak(
      LANGUAGES[language].sentences[index],
      voice,
      rate_wpm=rate_wpm,
      pitch=pitch,
      pitch_range=pitch_range,
    )
    offset = filled / SAMPLE_RATE
    heard = [
      tts.PhonemeEvent(e.phoneme, offset + e.start_s, min(offset + e.end_s, end_s))
      for e in sentence_events
      if offset + e.start_s < end_s
    ]
    if heard:  # the clip may end in the silence before a sentence's first phoneme
      events += heard
      spoken.append(f"{language}-{index}")
    gap = np.zeros(int(round(prosody.uniform(*_SENTENCE_GAP_S) * SAMPLE_RATE)), np.float32)
    pieces += [audio, gap]
    filled += len(audio) + len(gap)
  audio = np.concatenate(pieces)[:num_samples]
  peak = np.max(np.abs(audio))
  if peak > 0:
    audio = audio * (speech.PEAK / peak)
  return TtsUtterance(
    audio.astype(np.float32), events, language, voice, spoken, rate_wpm, pitch, pitch_range
  )
