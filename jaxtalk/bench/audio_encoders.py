"""Speech-encoder throughput: jitted Flax against PyTorch `transformers`, same CPU, same weights.

    python -m jaxtalk.bench.audio_encoders [--seconds 10] [--repeats 3] [--model wav2vec2]

A base-size model (12 layers, width 768) with random weights is written as a Hugging Face folder,
imported, and both implementations encode the same audio (every hidden state, float32). Reported:
seconds of audio encoded per second of wall time, and Flax's speed-up over PyTorch. PyTorch and
transformers are needed here only (`pip install jaxtalk[test]`).
"""

from __future__ import annotations

import sys
import tempfile

import jax
import numpy as np

from jaxtalk.bench.timing import measure, timed
from jaxtalk.cli import argument_parser, run_command
from jaxtalk.errors import UserError
from jaxtalk.models.audio.pretrained.backbones import make_backbone
from jaxtalk.models.audio.pretrained.importer import read_checkpoint
from jaxtalk.timebase import SAMPLE_RATE

BASE = {
  "wav2vec2": dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
  ),
  "hubert": dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
  ),
  "whisper": dict(
    d_model=512,
    encoder_layers=6,
    encoder_attention_heads=8,
    encoder_ffn_dim=2048,
    decoder_layers=1,
    decoder_attention_heads=8,
    decoder_ffn_dim=2048,
  ),
}


def _reference():
  from jaxtalk.bench.torch_reference import ensure_torchvision_importable

  try:
    import torch

    ensure_torchvision_importable()
    import transformers
  except ImportError:
    raise UserError(
      "this benchmark compares against PyTorch: pip install 'jaxtalk[test]' "
      "(torch CPU build + transformers)"
    ) from None
  return torch, transformers


def run(model: str, seconds: float, repeats: int) -> dict:
  torch, transformers = _reference()
  config_cls, model_cls = {
    "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
    "hubert": (transformers.HubertConfig, transformers.HubertModel),
    "whisper": (transformers.WhisperConfig, transformers.WhisperModel),
  }[model]
  reference = model_cls(config_cls(**BASE[model])).eval()
  with tempfile.TemporaryDirectory() as folder:
    reference.save_pretrained(folder, safe_serialization=True)
    spec, params = read_checkpoint(folder)
  if model == "whisper":
    seconds = spec.segment_samples / SAMPLE_RATE  # Whisper always encodes whole 30-second segments
  waveform = (
    np.random.default_rng(0).standard_normal((1, int(seconds * SAMPLE_RATE))).astype(np.float32)
    * 0.1
  )

  encode = jax.jit(make_backbone(spec).apply)
  flax_timing, _ = measure(lambda: encode({"params": params}, waveform), repeats)
  if model == "whisper":
    features = transformers.WhisperFeatureExtractor()(
      waveform[0], sampling_rate=SAMPLE_RATE, return_tensors="pt"
    )
    inputs, forward = features.input_features, reference.encoder
  else:
    inputs, forward = torch.from_numpy(waveform), reference
  with torch.inference_mode():
    forward(inputs, output_hidden_states=True)  # warm-up
    torch_seconds = min(
      timed(lambda: forward(inputs, output_hidden_states=True).last_hidden_state.numpy())[0]
      for _ in range(repeats)
    )
  return {
    "model": model,
    "audio_seconds": seconds,
    "flax_seconds": flax_timing.seconds,
    "flax_compile_seconds": flax_timing.compile_seconds,
    "torch_seconds": torch_seconds,
    "torch_threads": torch.get_num_threads(),
  }


def main(argv=None) -> int:
  parser = argument_parser("python -m jaxtalk.bench.audio_encoders", __doc__)
  parser.add_argument("--model", choices=sorted(BASE), default="wav2vec2")
  parser.add_argument(
    "--seconds", type=float, default=10.0, help="audio length (Whisper: always 30)"
  )
  parser.add_argument("--repeats", type=int, default=3)
  return run_command(_report, parser.parse_args(argv))


def _report(args) -> None:
  r = run(args.model, args.seconds, args.repeats)
  print(
    f"{r['model']} base, {r['audio_seconds']:.0f} s of audio, {jax.devices()[0].platform} "
    f"(torch threads: {r['torch_threads']})"
  )
  print(f"{'implementation':<16}{'seconds':>10}{'audio s / s':>14}")
  for name, seconds in (("flax (jit)", r["flax_seconds"]), ("pytorch", r["torch_seconds"])):
    print(f"{name:<16}{seconds:>10.3f}{r['audio_seconds'] / seconds:>14.1f}")
  print(
    f"flax compile: {r['flax_compile_seconds']:.1f} s; flax / pytorch speed: "
    f"{r['torch_seconds'] / r['flax_seconds']:.2f}x"
  )


if __name__ == "__main__":
  sys.exit(main())
