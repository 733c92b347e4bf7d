"""Scoring trained models: reconstruction quality and lip sync, measured on SynthTalk.

  python -m jaxtalk.eval --checkpoint runs/demo/bundle --data data/synthtalk

SynthTalk knows the exact mouth opening of every frame it renders, so lip sync is measured against
ground truth rather than against a second learned model (SyncNet): a linear probe reads the mouth
opening back from the motion latent of any frame, generated or real (see `synthtalk_eval`).
"""
