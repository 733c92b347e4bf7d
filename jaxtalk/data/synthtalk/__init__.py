"""SynthTalk: procedural talking-head clips whose lip-sync ground truth is exact.

`speech` makes syllable-based audio and its schedule, `motion` derives the mouth from that schedule
(and draws blinks, brows and head pose), `face` renders a parametric portrait, and `generate` puts
them together into clips and train/eval shards. Clips may instead speak real sentences: `tts` has
espeak-ng say them with the time of every phoneme, `sentences` holds what is said and by which
voices, and `visemes` turns the phonemes into the mouth. Run `python -m jaxtalk.data.synthtalk
--help`.
"""
