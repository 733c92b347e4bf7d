"""SynthTalk: procedural talking-head clips whose lip-sync ground truth is exact.

`speech` makes syllable-based audio and its schedule, `motion` derives the mouth from that schedule
(and draws blinks, brows and head pose), `face` renders a parametric portrait, and `generate` puts
them together into clips and train/eval shards. Run `python -m jaxtalk.data.synthtalk --help`.
"""

from jaxtalk.data.synthtalk.face import IDENTITY_PARAMS, render_clip, render_face, sample_identity
from jaxtalk.data.synthtalk.generate import SPLITS, generate_split, make_clip
from jaxtalk.data.synthtalk.motion import FPS, MOTION_PARAMS, mouth_from_schedule, mouth_opening
from jaxtalk.data.synthtalk.speech import EMOTIONS, SAMPLE_RATE, SyllableSchedule, synthesize_utterance
