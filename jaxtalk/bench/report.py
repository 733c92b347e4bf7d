"""The benchmark's results as one plain-text table."""

from __future__ import annotations


def _row(
  label: str, seconds: float | None = None, note: str = "", compile_seconds: float | None = None
):
  time = f"{seconds:9.3f}" if seconds is not None else " " * 9
  compiled = f"{compile_seconds:9.1f}" if compile_seconds is not None else ""
  return f"{label:<54}{time}   {note:<30}{compiled}"


def format_report(results: dict) -> str:
  machine, sampling, options = results["machine"], results["sampling"], results["sample_options"]
  lines = [
    f"jaxtalk benchmark: {results['model']}",
    f"machine: {machine['cpu']}, {machine['cores']} cores; jax {machine['jax']}, backend "
    f"{machine['backend']} ({machine['device']}); {machine['date']}",
    "",
    f"{'measure (compile time excluded)':<54}{'seconds':>9}   {'rate':<30}{'compile s':>9}",
  ]
  lines.append(
    _row(f"sampling {sampling['audio_seconds']:g} s of audio ({sampling['frames']} frames)")
  )
  lines.append(
    _row(
      f"  motion: rolling sampler ({options['motion_steps']} steps, cfg {options['cfg_scale']:g})",
      sampling["motion_seconds"],
      f"RTF {sampling['rtf_motion']:.3f}",
      sampling["motion_compile_seconds"],
    )
  )
  lines.append(
    _row(
      f"  rendering ({options['render_steps']} steps, batches of {options['batch_frames']})",
      sampling["render_seconds"],
      f"RTF {sampling['rtf_render']:.3f}",
      sampling["render_compile_seconds"],
    )
  )
  lines.append(
    _row(
      "  total",
      sampling["motion_seconds"] + sampling["render_seconds"],
      f"RTF {sampling['rtf_total']:.3f}, {sampling['frames_per_second']:.1f} frames/s",
    )
  )
  lines.append(
    _row(
      "first-frame latency (motion for all audio + 1 batch)", results["first_frame_latency_seconds"]
    )
  )
  for stage, step in results["train_step"].items():
    lines.append(
      _row(
        f"train step, {stage} (batch {step['batch']})", step["seconds"], "", step["compile_seconds"]
      )
    )
  lines.append(_row("motion sampler, same audio features:"))
  for row in results["samplers"]:
    audio = f"{row['audio_seconds']:g} s audio ({row['frames']} frames)"
    lines.append(
      _row(f"  KV cache, {audio}", row["kv_cache_seconds"], "", row["kv_cache_compile_seconds"])
    )
    lines.append(
      _row(
        f"  recompute, {audio}",
        row["recompute_seconds"],
        f"x{row['recompute_over_kv_cache']:.1f} KV cache, diff {row['max_abs_difference']:.0e}",
        row["recompute_compile_seconds"],
      )
    )
  lines.append(
    "RTF: generation seconds per second of audio (below 1 is faster than real time); "
    "diff: largest |KV cache - recompute| latent"
  )
  return "\n".join(lines)
