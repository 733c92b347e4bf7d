"""Pretrained speech encoders (wav2vec2, HuBERT, Whisper) in Flax, imported from Hugging Face folders.

- `spec`: the architecture of an imported checkpoint, as a small JSON-able record;
- `wav2vec2`, `whisper` (+ `whisper_mel`): the encoders, layer for layer as the reference;
- `importer`: a local `config.json` + `model.safetensors` folder -> (spec, Flax params), and the
  config's view of it (`audio.encoder`, `audio.checkpoint`, the recorded `audio.architecture`);
- `chunking`: long audio in overlapping segments, and chunk-by-chunk streaming;
- `features`: the audio encoder the motion model sees: chosen layers, resampled to video frames,
  projected to `audio.dim`.
"""
