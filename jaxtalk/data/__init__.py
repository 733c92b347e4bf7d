"""Data: the clip container (ArrayRecord shards), the SynthTalk generator and the training pipeline."""
