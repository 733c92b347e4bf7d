"""What the numbers were measured on: CPU, cores, jax version, backend, accelerator, date."""

from __future__ import annotations

import datetime
import os
import platform

import jax


def cpu_model() -> str:
  """The CPU's marketing name, from /proc/cpuinfo on Linux, else what the platform reports."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown CPU"


def describe_machine() -> dict:
  device = jax.devices()[0]
  return {
    "cpu": cpu_model(),
    "cores": os.cpu_count(),
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "device": f"{jax.device_count()} x {device.device_kind}",
    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
  }
