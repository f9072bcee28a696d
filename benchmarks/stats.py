"""Statistics over a grid's seeds, and the paper's claims they check.

* `summarize`: (dataset, model, mode) -> `Summary`, the finished seeds'
  metrics of one grid row; mean and sample std (n - 1) over seeds.
* `lift`: row A over row B paired by seed, Δ_s = A_s - B_s; `Lift.call`
  is the one-std rule: the lift exceeds one std when |mean Δ| > the sample
  std of Δ_s (needs two paired seeds; one seed gives a direction only).
* `claim_results`: each of the paper's claims that a dataset's rows can
  check (Diff4Rec beats the backbone, 'aug' beats 'base', the curriculum
  beats random order, the generator beats a control) with its lifts on the
  test metrics and one label (holds, partly holds, not supported, ...).
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Optional, Sequence

from benchmarks import grid
from benchmarks import paper


@dataclasses.dataclass
class Summary:
  """Finished seeds of one (dataset, model, mode) row."""
  seeds: list
  per_seed: dict          # seed -> {('test'|'valid', metric): value}

  @property
  def n(self) -> int:
    return len(self.seeds)

  def values(self, split: str, metric: str) -> list:
    return [self.per_seed[s][(split, metric)] for s in self.seeds
            if (split, metric) in self.per_seed[s]]

  def mean(self, split: str, metric: str) -> Optional[float]:
    v = self.values(split, metric)
    return statistics.fmean(v) if v else None

  def std(self, split: str, metric: str) -> Optional[float]:
    """Sample standard deviation over seeds (n - 1); None for one seed."""
    v = self.values(split, metric)
    return statistics.stdev(v) if len(v) >= 2 else None


def summarize(states: Sequence[grid.CellState]) -> dict:
  """(dataset, model, mode) -> Summary of the finished cells."""
  out = {}
  for st in states:
    if st.status != "done":
      continue
    c = st.cell
    s = out.setdefault((c.dataset, c.model, c.mode), Summary([], {}))
    s.seeds.append(c.seed)
    s.per_seed[c.seed] = {(split, k): float(v) for split in ("test", "valid")
                          for k, v in st.results[split].items()}
  for s in out.values():
    s.seeds.sort()
  return out


@dataclasses.dataclass
class Lift:
  """A vs B on one metric over the seeds where both finished."""
  n: int
  mean_delta: Optional[float] = None
  std_delta: Optional[float] = None     # sample std of the paired deltas
  relative: Optional[float] = None      # mean delta / mean of B (same seeds)

  @property
  def call(self) -> Optional[str]:
    """up | down | flat (n >= 2, the one-std rule); up? | down? (one seed)."""
    if self.n == 0:
      return None
    if self.n == 1:
      return "up?" if self.mean_delta > 0 else (
          "down?" if self.mean_delta < 0 else "flat")
    if abs(self.mean_delta) > self.std_delta:
      return "up" if self.mean_delta > 0 else "down"
    return "flat"


def lift(a: Optional[Summary], b: Optional[Summary], split: str,
         metric: str) -> Lift:
  """Paired per-seed lift of row `a` over row `b`.

  delta_s = a_s - b_s for each seed s finished in both; the lift exceeds
  one std when |mean delta| > sample std of delta (needs two seeds).
  """
  if a is None or b is None:
    return Lift(0)
  seeds = [s for s in a.seeds if s in b.per_seed and
           (split, metric) in a.per_seed[s] and
           (split, metric) in b.per_seed[s]]
  if not seeds:
    return Lift(0)
  d = [a.per_seed[s][(split, metric)] - b.per_seed[s][(split, metric)]
       for s in seeds]
  base = statistics.fmean(b.per_seed[s][(split, metric)] for s in seeds)
  return Lift(len(seeds), statistics.fmean(d),
              statistics.stdev(d) if len(d) >= 2 else None,
              statistics.fmean(d) / base if base else None)


def _claim_label(calls: list) -> str:
  """One label for a comparison from its per-metric calls."""
  calls = [c for c in calls if c is not None]
  if not calls:
    return "not run"
  if all(c.endswith("?") or c == "flat" for c in calls) and any(
      c.endswith("?") for c in calls):
    if all(c == "up?" for c in calls):
      return "holds in direction on one seed only (no spread estimate)"
    if all(c == "down?" for c in calls):
      return "fails in direction on one seed only (no spread estimate)"
    return "mixed on one seed (no spread estimate)"
  ups = sum(c == "up" for c in calls)
  downs = sum(c == "down" for c in calls)
  if ups == len(calls):
    return "holds"
  if ups and downs:
    return "mixed (one metric up, another down, beyond 1 std)"
  if ups:
    return "partly holds (up beyond 1 std on some metrics, within 1 std on " \
           "the others)"
  if downs:
    return "does not hold: ours is worse beyond 1 std"
  return "not supported: the difference is within 1 std of seed noise"


def _claims(dataset: str, models: Sequence[str], modes: Sequence[str]):
  """(model, mode_a, mode_b, paper's claim) rows the verdict checks."""
  out = []
  for m in models:
    if "diff4rec" in modes and "base" in modes:
      src = "Table 2" if dataset == "ml-1m" else (
          "Table 2/3" if m == "sasrec" else "Table 3")
      out.append((m, "diff4rec", "base",
                  f"Diff4Rec improves {grid.MODEL_TITLES[m]} ({src})"))
  if "sasrec" in models and "aug" in modes and "base" in modes:
    out.append(("sasrec", "aug", "base", "augmentation without the "
                "curriculum already beats the base model (Table 4, "
                "conclusion 1)"))
  if "sasrec" in models and "aug" in modes and "diff4rec" in modes:
    out.append(("sasrec", "diff4rec", "aug", "the curriculum beats random "
                "order (Table 4, conclusion 2)"))
  for ctl, (_, _, of) in grid.CONTROL_MODES.items():
    if "sasrec" in models and ctl in modes and of in modes:
      what = ("the augmentation beats copies that only duplicate the "
              "originals" if ctl == "duplicate" else
              f"the diffusion generator's candidates beat {ctl} ones")
      out.append(("sasrec", of, ctl, f"{what} (a control; the paper has "
                  "none)"))
  return out


def claim_results(dataset: str, summaries: dict, models: Sequence[str],
                  modes: Sequence[str]) -> list:
  """[(model, mode_a, mode_b, claim, label, {metric: Lift})] on test."""
  out = []
  for model, a, b, claim in _claims(dataset, models, modes):
    sa, sb = summaries.get((dataset, model, a)), summaries.get(
        (dataset, model, b))
    lifts = {m: lift(sa, sb, "test", m) for m in paper.MAIN_METRICS}
    out.append((model, a, b, claim, _claim_label(
        [l.call for l in lifts.values()]), lifts))
  return out
