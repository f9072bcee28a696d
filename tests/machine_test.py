"""Tests for benchmarks/machine.py's host CPU-time readings (steal)."""

from benchmarks import machine
from benchmarks import train_speed


def _stat(tmp_path, line):
  p = tmp_path / "stat"
  p.write_text(line + "\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
  return str(p)


def test_cpu_times_reads_the_first_line(tmp_path):
  got = machine.cpu_times(_stat(tmp_path, "cpu  100 0 20 300 4 0 1 25 0 0"))
  assert got == dict(user=100, nice=0, system=20, idle=300, iowait=4, irq=0,
                     softirq=1, steal=25)


def test_cpu_times_none_for_missing_or_malformed(tmp_path):
  assert machine.cpu_times(str(tmp_path / "absent")) is None
  assert machine.cpu_times(_stat(tmp_path, "cpu 1 2 3")) is None       # short
  assert machine.cpu_times(_stat(tmp_path, "intr 1 2 3 4 5 6 7 8")) is None
  assert machine.cpu_times(_stat(tmp_path, "cpu 1 2 x 4 5 6 7 8")) is None


def test_steal_fraction():
  before = dict(user=0, nice=0, system=0, idle=0, iowait=0, irq=0,
                softirq=0, steal=0)
  after = dict(before, user=150, idle=30, steal=20)
  assert machine.steal_fraction(before, after) == 0.1
  assert machine.steal_fraction(before, before) is None   # no time passed
  assert machine.steal_fraction(None, after) is None


def test_steal_summary_medians_only_quiet_repeats():
  text = train_speed.steal_summary([900, 700, 800, 950], [0.0, 0.2, 0.005, 0.05],
                                   " seq/s")
  assert "[0.0%, 20.0%, 0.5%, 5.0%]" in text
  assert "median of the 2 quiet repeat(s)" in text and ": 850 seq/s" in text
  assert "no quiet repeat" in train_speed.steal_summary([1.0], [0.5], " s")
  assert train_speed.steal_summary([1.0], [None], " s") == ""


def test_results_record_the_cpus_instruction_sets(tmp_path):
  from diff4rec_jax import runlog  # pylint: disable=g-import-not-at-top
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n"
                  "flags\t\t: fpu sse avx2 fma avx512f avx512bw\n\n"
                  "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
  got = runlog.machine_info(str(info))
  assert got["cpu"] == "AMD EPYC"
  assert got["isa"] == ["avx2", "fma", "avx512f"]
  none = runlog.machine_info(str(tmp_path / "missing"))
  assert none["cpu"] is None and none["isa"] is None
