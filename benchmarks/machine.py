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


_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq",
               "steal")


def cpu_times(path: str = "/proc/stat"):
  """Host-wide CPU time by state, in clock ticks, from the first ('cpu')
  line of /proc/stat: {user, nice, system, idle, iowait, irq, softirq,
  steal}. None where there is no such file (not Linux) or it cannot be
  read as one.

  'steal' is the time a virtual machine's CPUs were ready to run but the
  hypervisor ran something else: a benchmark repeat that saw steal ran on
  less than the machine's cores.
  """
  try:
    with open(path) as f:
      first = f.readline().split()
  except OSError:
    return None
  if len(first) < 1 + len(_CPU_FIELDS) or first[0] != "cpu":
    return None
  try:
    return dict(zip(_CPU_FIELDS, (int(v) for v in first[1:9])))
  except ValueError:
    return None


def steal_fraction(before, after):
  """The share of all CPU time between two `cpu_times` readings that the
  hypervisor stole (0..1); None if either reading is None or no time
  passed."""
  if before is None or after is None:
    return None
  total = sum(after[k] - before[k] for k in _CPU_FIELDS)
  if total <= 0:
    return None
  return (after["steal"] - before["steal"]) / total
