"""Sampling: portrait + speech -> frames (`generate.TalkingHead`), the rolling motion sampler, and
reading model bundles. Imports nothing of the trainer, so a notebook that only samples loads no
training stage, optimizer, data pipeline or checkpoint library."""
