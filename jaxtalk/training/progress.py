"""Training progress: a console line every few steps, every metric to TensorBoard and JSONL.

The device runs ahead of the host: a train step returns as soon as it is dispatched. Reading a
step's metrics right away would make the host wait for that step and leave the device idle while
the next batch is prepared. So the logger holds on to each step's metrics and reads them only
after the *next* step has been dispatched, when they are (nearly always) already computed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tensorboardX import SummaryWriter


def say(message: str) -> None:
  """Prints a status line from process 0 only, so a multi-host run's console is not repeated."""
  if jax.process_index() == 0:
    print(message, flush=True)


def format_duration(seconds: float) -> str:
  """9m48s, 2h03m, 41s: short enough for a progress line."""
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{seconds:02d}s"
  return f"{seconds}s"


class ProgressLogger:
  """Call `log(step, metrics)` after dispatching each step, and `close()` at the end.

  After the first step and then every `log_every` steps (and at `num_steps`) it prints
  `step 120/2000 | loss 0.1234 | 3.2 steps/s | ETA 9m48s` and writes every metric, averaged over
  the steps since the previous line, to `workdir/tensorboard` (TensorBoard event files) and
  `workdir/metrics.jsonl`. The step rate excludes the first step, which includes compilation.
  Only process 0 writes, so a multi-host run has one log.
  """

  # Weight of the newest interval in the smoothed step rate: steady, yet follows real changes.
  RATE_SMOOTHING = 0.3

  def __init__(self, workdir: str | Path, num_steps: int, log_every: int):
    self.num_steps = num_steps
    self.log_every = max(1, log_every)
    self._is_writer = jax.process_index() == 0
    self._pending: tuple[int, Any] | None = None
    self._window: list[dict[str, float]] = []  # fetched metrics since the last report
    self._last_step = 0
    self._rate: float | None = None  # smoothed steps per second
    self._clock: tuple[int, float] | None = None  # (step, time) when the rate was last measured
    if self._is_writer:
      workdir = Path(workdir)
      workdir.mkdir(parents=True, exist_ok=True)
      self._tensorboard = SummaryWriter(str(workdir / "tensorboard"))
      # Open for the whole run and closed by close(): appending line by line keeps it readable live.
      self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

  def log(self, step: int, metrics: dict[str, Any]) -> None:
    """Records the metrics of `step` (device arrays) and reads those of the previous step."""
    if self._pending is not None:
      self._fetch(*self._pending)
    self._pending = (step, metrics)

  def flush(self) -> None:
    """Reads and reports the last step's metrics (waits for it); call before saving or exiting."""
    if self._pending is not None:
      self._fetch(*self._pending)
      self._pending = None
    if self._window:
      self._report(self._last_step)

  def close(self) -> None:
    self.flush()
    if self._is_writer:
      self._tensorboard.close()
      self._jsonl.close()

  def _fetch(self, step: int, metrics: dict[str, Any]) -> None:
    # Reading every step (one step late) keeps the host at most one step ahead of the device,
    # so queued batches cannot pile up in device memory.
    values = jax.device_get(metrics)
    self._window.append({name: float(np.asarray(value)) for name, value in values.items()})
    self._last_step = step
    if step % self.log_every == 0 or step == self.num_steps or self._clock is None:
      self._report(step)

  def _report(self, step: int) -> None:
    """Writes the metrics averaged over the steps since the last report: diffusion losses are
    noisy step to step (random noise levels), their mean over a window is what to watch."""
    values = {
      name: float(np.mean([v[name] for v in self._window if name in v]))
      for name in self._window[-1]
    }
    self._window = []
    self._update_rate(step)
    if not self._is_writer:
      return
    line = f"step {step}/{self.num_steps} | loss {values.get('loss', float('nan')):.4f}"
    if self._rate:
      eta = (self.num_steps - step) / self._rate
      line += f" | {self._rate:.1f} steps/s | ETA {format_duration(eta)}"
    say(line)
    for name, value in values.items():
      self._tensorboard.add_scalar(name, value, step)
    record = {"step": step, **values}
    if self._rate:
      record["steps_per_sec"] = self._rate
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def _update_rate(self, step: int) -> None:
    # The first reported step includes compilation; the clock starts once it has finished.
    now = time.perf_counter()
    if self._clock is not None and step > self._clock[0]:
      rate = (step - self._clock[0]) / max(now - self._clock[1], 1e-9)
      self._rate = (
        rate
        if self._rate is None
        else (self.RATE_SMOOTHING * rate + (1 - self.RATE_SMOOTHING) * self._rate)
      )
    self._clock = (step, now)
