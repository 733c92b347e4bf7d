"""The evaluation's picture: mouth traces, offset curves and drift, from the results dict alone.

Everything drawn is in the JSON the evaluation writes (`results["curves"]`, `results["drift"]`),
so a figure can be redrawn from a saved scores.json without rerunning anything:
`write_figure(json.load(open("scores.json")), "scores.png")`.
"""

from __future__ import annotations

import io

import numpy as np

from jaxtalk.eval.synthtalk_eval import ROWS
from jaxtalk.media import write_bytes
from jaxtalk.timebase import FPS

# One colour per row, the same in every panel; ground truth is black. Labels are the table's.
ROW_COLOURS = {
  "gt_frames": "tab:green",
  "gt_motion": "tab:blue",
  "generated": "tab:red",
  "audio_free": "tab:gray",
}
ROW_STYLES = {name: (ROWS[name], colour) for name, colour in ROW_COLOURS.items()}


def render_figure(results: dict) -> bytes:
  """The report as PNG bytes: a row of mouth traces, then offset curves and drift."""
  import matplotlib

  matplotlib.use("Agg")  # no display; also keeps a notebook's backend out of it
  import matplotlib.pyplot as plt

  curves = results["curves"]
  traces = curves["mouth_traces"]
  columns = max(len(traces), 3)
  figure, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 6.4), squeeze=False)
  for ax, trace in zip(axes[0], traces):
    seconds = np.arange(len(trace["truth"])) / FPS
    ax.plot(seconds, trace["truth"], color="black", lw=2, label="ground truth")
    for name in ("generated", "gt_motion"):
      if name not in trace:  # a renderer-only evaluation generates nothing
        continue
      label, colour = ROW_STYLES[name]
      ax.plot(seconds, trace[name], color=colour, lw=1.2, label=f"read: {label}")
    ax.set(xlabel="seconds", ylabel="mouth opening", ylim=(-0.1, 1.1))
  for ax in axes[0][len(traces) :]:
    ax.axis("off")
  axes[0][0].set_title("mouth opening, read from the video", loc="left")
  axes[0][0].legend(fontsize=7, loc="upper right")

  reader_axis, sync_axis, drift_axis = axes[1][:3]
  for name in curves["reader_offset_curves"]:
    label, colour = ROW_STYLES[name]
    reader_axis.plot(
      curves["reader_lags"], curves["reader_offset_curves"][name], color=colour, label=label
    )
    sync_axis.plot(
      curves["sync_offsets"], curves["sync_distance_curves"][name], color=colour, label=label
    )
  reader_axis.set(
    title="reader: correlation per offset", xlabel="offset (frames)", ylabel="correlation"
  )
  sync_axis.set(title="sync network: distance per offset", xlabel="offset (frames)")
  sync_axis.set_ylabel("mean embedding distance")
  reader_axis.legend(fontsize=7)
  for ax in (reader_axis, sync_axis):
    ax.axvline(0, color="black", lw=0.5)
  if "drift" in results:
    drift = results["drift"]
    minutes = np.asarray(drift["curve"]["seconds"]) / 60.0
    drift_axis.plot(minutes, drift["curve"]["mae"], "o-", ms=3, color=ROW_STYLES["generated"][1])
    drift_axis.set(
      title=f"drift: mouth error over a {drift['minutes']:.1f} min rollout",
      xlabel="minutes",
      ylabel="mouth-opening MAE",
      ylim=(0, None),
    )
  else:
    drift_axis.axis("off")
  for ax in axes[1][3:]:
    ax.axis("off")
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=90)
  plt.close(figure)
  return buffer.getvalue()


def write_figure(results: dict, path) -> None:
  """Writes `render_figure(results)` to `path`; the file appears only once complete."""
  write_bytes(path, render_figure(results))
