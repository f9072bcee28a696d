"""What machine a benchmark ran on, for the results files."""

import os
import platform
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from diff4rec_jax import runlog  # pylint: disable=g-import-not-at-top


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, as results.json records it
  (runlog.machine_info), else platform's guess."""
  return (runlog.machine_info()["cpu"] or platform.processor()
          or platform.machine())


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
