"""The base experiment config: the reference model, 256x256 on one accelerator.

Files in `configs/` start from it and override what their experiment changes: `demo.py` shrinks it
to a 2-core CPU, `gpu256.py` points it at real data in bfloat16, `pod512.py` scales it to a pod.
Every key a run reads is declared here, once, with its default; modules take their settings from
these sections and have no defaults of their own. So a typo on the command line
(`--config.motoin.depth=8`) is rejected by ml_collections instead of silently ignored.
"""

from __future__ import annotations

import ml_collections

from jaxtalk.errors import UserError

# Logical axis name -> mesh axes. Model code names logical axes only (jaxtalk/models/layers.py);
# this table decides sharding. Activations and weights are named apart: a weight's "embed" is
# split over fsdp (each device stores a slice, gathered when used) while an activation's
# "activation_embed" stays whole, its batch being split over data and fsdp instead. Tensor
# parallelism splits whole attention heads and the MLP's hidden width, in weights and activations.
#
# One table serves all four models: they are traced together (stage 1 runs the motion encoder
# into the renderer in one loss) under one flax rules context, and where a model's parameters
# should be split otherwise it names them otherwise (convolutions: "conv_in"/"conv_out", audio
# features: "audio_embed").
ACTIVATION_RULES = (
  ("activation_batch", ("data", "fsdp")),
  ("activation_length", None),
  ("activation_embed", None),
  ("activation_heads", "tensor"),
  ("activation_kv", None),
  ("activation_mlp", "tensor"),
)
WEIGHT_RULES = (
  ("embed", "fsdp"),
  ("audio_embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv", None),
  ("layers", None),  # the stacked blocks of a scanned model
  ("conv_in", "fsdp"),
  ("conv_out", "tensor"),
)
DEFAULT_AXIS_RULES = ACTIVATION_RULES + WEIGHT_RULES


def _train(**keys) -> ml_collections.ConfigDict:
  """One stage's training run: `jaxtalk.training.settings.TrainSettings` and the stage's own keys."""
  common = dict(
    batch_size=32,  # global: summed over all hosts, whatever their number
    num_steps=300_000,
    learning_rate=2e-4,
    warmup_steps=2_000,
    end_learning_rate_factor=0.1,  # the cosine decay ends at this fraction of the peak
    weight_decay=0.01,
    adam_b1=0.9,
    adam_b2=0.999,
    grad_clip=1.0,  # max global gradient norm
    ema_decay=0.9999,  # per step; sampling uses the EMA weights
    log_every=100,
    checkpoint_every=5_000,
  )
  return ml_collections.ConfigDict({**common, **keys})


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stage = "all"  # what train.py trains: "renderer" (stage 1), "motion" (stage 2) or "all"

  c.data = ml_collections.ConfigDict(
    dict(
      train_dir="",  # ArrayRecord shards (python -m jaxtalk.data.synthtalk / jaxtalk.data.ingest)
      image_size=256,
      windows_per_clip=4,  # training windows drawn from each clip per epoch
      # How portraits are framed at sampling: the crop's side over the detected face box's (see
      # jaxtalk.media.face_detect). It must frame faces as the training data does: 1.6 is the
      # framing ingest's eye alignment of real video is calibrated to; SynthTalk's wider
      # head-and-shoulders framing needs 3.1.
      face_crop_scale=1.6,
      # Sampling warns that a portrait is unlike the training faces when the renderer redraws it
      # from its own motion at a PSNR below this (dB; 0: never). Set it from measurement: the
      # evaluation prints the held-out portraits' values, python -m jaxtalk.eval.photos a photo's.
      familiar_psnr=0.0,
    )
  )

  c.audio = ml_collections.ConfigDict(
    dict(
      encoder="mel",  # "mel" (trained from scratch) or a pretrained "wav2vec2", "hubert", "whisper"
      dim=512,  # feature width the motion model sees
      n_mels=80,  # mel encoder: mel bands ...
      layers=4,  # ... and residual conv layers
      # Pretrained encoders (jaxtalk/models/audio/pretrained): a local Hugging Face folder.
      checkpoint="",  # folder with config.json + model.safetensors; never downloaded
      layer=-1,  # hidden state fed to the motion model (0: before the first layer, -1: the output) ...
      weighted_layers=False,  # ... or a learned softmax-weighted sum of all of them
      trainable=False,  # fine-tune the pretrained weights too (default: layer weights + projection)
      segment_seconds=20.0,  # long audio goes through in segments of this length ...
      context_seconds=1.0,  # ... each hearing this much more audio on each side
      architecture={},  # recorded from the checkpoint by training, so bundles need no folder
    )
  )

  # Model sections hold exactly the fields of their Flax module (jaxtalk/models/factory.py).
  c.motion_encoder = ml_collections.ConfigDict(
    dict(num_tokens=8, token_dim=16, grid_size=8, patch_size=1, base_channels=32, max_channels=256)
  )
  c.renderer = ml_collections.ConfigDict(
    dict(
      base_channels=128,
      channel_mults=(1, 2, 4, 4),
      blocks_per_level=2,
      patch_size=2,
      attention_heads=8,
      cond_dim=512,
      warp_channels=0,  # > 0: warp-then-refine, a motion field of this width warps the reference
      warp_stride=4,  # the motion field's cell size in pixels
      warp_blocks=2,  # residual blocks of the motion-field network
      # Recompute the U-Net's residual blocks in the backward pass: "full" or "dots", as
      # motion.remat says (convolutions are no dots: both recompute them); "none": keep all.
      remat="none",
    )
  )
  c.motion = ml_collections.ConfigDict(
    dict(
      dim=512,
      depth=12,
      heads=8,
      mlp_ratio=4.0,
      chunk_size=4,  # frames denoised together (full attention inside, causal across chunks)
      lookback_chunks=8,  # finished chunks a frame attends to, besides the reference
      audio_radius=3,  # audio features each side of its own frame that a frame cross-attends to
      rope_fraction=0.5,  # share of each head's features rotated by time
      scan_layers=True,  # one nn.scan over the blocks: one block to compile, whatever the depth
      # What each block keeps for the backward pass: everything ("none"), only its inputs
      # ("full") or its inputs and matmul outputs ("dots"); the rest is recomputed.
      remat="none",
      # The emotion labels the acting controls know (`jaxtalk.data.acting`): SynthTalk's.
      emotions=("neutral", "happy", "sad", "angry"),
    )
  )

  # The stage-1 loss settings were measured on the 64x64 demo (jaxtalk/stages/renderer_stage.py).
  c.renderer_train = _train(
    time_schedule="logit_normal",
    time_logit_mean=-1.0,  # flow times lean to noise, where only motion tells the frame
    change_boost=4.0,  # extra loss weight of pixels that differ from the reference
    # Colour jitter of the driving frames: with the narrow motion latent, what keeps identity out
    # of it (DESIGN.md) when identities and lighting vary, as in real footage.
    appearance_jitter=0.1,
    latent_spread=0.5,  # least std of a latent dim between frames of one clip
    warp_loss=1.0,  # weight of |warped reference - target| when the renderer warps
    # Share of targets moved by a random small similarity (renderer_stage.random_similarity): a
    # pose change the encoder must put into the latent for the warp to follow.
    pose_jitter=0.5,
  )
  c.motion_train = _train(
    batch_size=64,
    num_steps=200_000,
    window_frames=64,  # frames per training window
    audio_dropout=0.1,  # drop the audio of this fraction of examples (for guidance)
    # Drop each group of acting controls (emotion, pose amplitude, blink rate) of this fraction of
    # examples: the model learns to decide what is not given, and emotion guidance needs it.
    acting_dropout=0.3,
    # And all of them together for this fraction: all-auto is what sampling does by default.
    acting_all_dropout=0.2,
    # Where the stage-1 latents of the training clips are cached ("": <data.train_dir>/latents);
    # every host must see the same folder.
    latent_cache_dir="",
  )

  c.sample = ml_collections.ConfigDict(
    dict(
      render_steps=12,  # renderer Euler steps per frame
      motion_steps=12,  # motion Euler steps per chunk
      chunks_in_flight=3,  # chunks denoised at once by the rolling sampler; divides motion_steps
      cfg_scale=2.0,  # classifier-free guidance on the audio (1: off, 0: audio-free)
      batch_frames=16,  # frames rendered per call
      # Guidance by the emotion, when the user gives one (1: off): one more model branch.
      emotion_cfg_scale=1.0,
    )
  )

  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  c.axis_rules = DEFAULT_AXIS_RULES
  c.compute_dtype = "float32"
  return c


# Values that are not sections of their own, though ml_collections stores dicts as sections.
_OPAQUE_KEYS = {("audio", "architecture")}


def config_from_dict(stored: dict) -> ml_collections.ConfigDict:
  """A config saved as a dict (in a bundle), checked to hold exactly the keys of `base_config`.

  A missing or unknown key means it was written by another version of jaxtalk; filling it in from
  the base could silently build another model, so it is refused.
  """
  _check_keys(stored, base_config().to_dict(), ())
  return ml_collections.ConfigDict(stored)


def _check_keys(stored, expected, path):
  if not isinstance(stored, dict):
    raise UserError(f"config key {'.'.join(path)} should be a section, it is {stored!r}")
  for missing in sorted(set(expected) - set(stored)):
    raise UserError(f"config lacks key {'.'.join(path + (missing,))}")
  for unknown in sorted(set(stored) - set(expected)):
    raise UserError(f"config has unknown key {'.'.join(path + (unknown,))}")
  for key, value in expected.items():
    if isinstance(value, dict) and path + (key,) not in _OPAQUE_KEYS:
      _check_keys(stored[key], value, path + (key,))
