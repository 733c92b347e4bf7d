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
    _row(
      f"sampling a file, {sampling['audio_seconds']:g} s of audio ({sampling['frames']} frames)",
      note="",
      compile_seconds=sampling["compile_seconds"],
    )
  )
  lines.append(
    _row(
      f"  motion: rolling sampler ({options['motion_steps']} steps, cfg {options['cfg_scale']:g})",
      sampling["motion_seconds"],
      f"RTF {sampling['rtf_motion']:.3f}",
    )
  )
  lines.append(
    _row(
      f"  rendering ({options['render_steps']} steps, a chunk of frames a call)",
      sampling["render_seconds"],
      f"RTF {sampling['rtf_render']:.3f}",
    )
  )
  lines.append(
    _row(
      "  total, as one stream",
      sampling["seconds"],
      f"RTF {sampling['rtf_total']:.3f}, {sampling['frames_per_second']:.1f} frames/s",
    )
  )
  live = results["live"]
  lines.append(
    _row(f"live stream, {live['push_ms']:g} ms pushes, {live['chunk_ms']:g} ms chunks", note="")
  )
  lines.append(
    _row(
      "  first frame, from the first sample",
      live["first_frame_seconds"],
      f"look-ahead {live['lookahead_ms']:g} ms + 40 ms frame",
    )
  )
  lines.append(
    _row("  first frame, after its audio has arrived", live["first_frame_after_lookahead_seconds"])
  )
  lines.append(_row("  streaming", note=f"RTF {live['rtf']:.3f}"))
  for name in ("p50", "p95", "max"):
    lines.append(_row(f"  chunk latency, {name}", live[f"chunk_latency_{name}_seconds"]))
  if "startup" in results:
    for name, label in (("empty_cache", "empty"), ("disk_cache", "filled")):
      run = results["startup"][name]
      lines.append(
        _row(
          f"fresh process, {label} disk cache: first frames",
          note=f"{run['programs_compiled']} compiled, {run['programs_loaded']} loaded",
          compile_seconds=run["compile_seconds"],
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
    "RTF: generation seconds per second of audio (below 1 is faster than real time); chunk "
    "latency: from a push's audio arriving to its frames out; diff: largest |KV cache - "
    "recompute| latent"
  )
  return "\n".join(lines)
