"""What machine a benchmark ran on, for the results files."""

import os
import platform


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (else platform's guess)."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f
                 if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return cpu


def cpu_description() -> str:
  """E.g. '2-core AMD EPYC CPU'."""
  return f"{os.cpu_count()}-core {cpu_model()} CPU"
