"""Scoring trained models with instruments that share nothing with them.

  python -m jaxtalk.eval --checkpoint runs/demo/bundle --data data/synthtalk

SynthTalk knows the exact motion of every frame it renders. A reader network trained on SynthTalk
frames (`reader`, `train_reader`) reads every motion parameter back from the pixels of any video,
generated or real, and a SyncNet-style sync network trained here (`syncnet`, `train_syncnet`) gives
the LSE-D / LSE-C sync scores of the literature, also on a user's own clips. `synthtalk_eval`
puts them together; neither instrument is part of the model under test.
"""
