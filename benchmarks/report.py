"""The grid's Markdown report beside the paper, its plot and tables.

`build_report` (pure: states in, text out) writes the report of the
finished cells: how it was made, verdicts at a glance, per dataset our
mean ± std beside the paper's Tables 2-4, the paired lifts and a verdict
in words, validation curves, and every cell with the settings it ran with.
`write_report` inspects the root, draws the plot (`write_plot`, needs
matplotlib) and writes the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional, Sequence

import numpy as np

from benchmarks import grid
from benchmarks import machine as machine_info
from benchmarks import paper
from benchmarks import stats
from diff4rec_jax import rundir
from diff4rec_jax import runlog


def _pct(x: Optional[float]) -> str:
  return "n/a" if x is None else f"{100 * x:+.1f}%"


def _ms(s: Optional[stats.Summary], split: str, metric: str) -> str:
  """'mean ± std' (or 'mean' for one seed)."""
  if s is None or s.mean(split, metric) is None:
    return "not run"
  m, sd = s.mean(split, metric), s.std(split, metric)
  return f"{m:.4f}" if sd is None else f"{m:.4f} ± {sd:.4f}"


def _pv(v: Optional[float]) -> str:
  return "—" if v is None else f"{v:.4f}"


def _row_name(model: str, mode: str) -> str:
  return f"{grid.MODEL_TITLES[model]} {grid.MODE_TITLES[mode]}"


def _magnitude(ours: Optional[float], theirs: Optional[float]) -> str:
  """Our relative lift against the paper's, in words ('' if no claim)."""
  if ours is None or theirs is None:
    return ""
  if theirs > 0 and ours <= 0:
    return "the paper's gain does not appear"
  if theirs > 0 and ours < 0.5 * theirs:
    return "our gain is less than half the paper's"
  if theirs > 0 and ours > 1.5 * theirs:
    return "our gain is larger than the paper's"
  if theirs > 0:
    return "our gain is of the paper's size"
  return ""


def verdict(dataset: str, summaries: dict, models: Sequence[str],
            modes: Sequence[str]) -> list:
  """Plain-language bullets: which of the paper's claims hold here."""
  lines = []
  for model, a, b, claim, label, lifts in stats.claim_results(
      dataset, summaries, models, modes):
    sa, sb = summaries.get((dataset, model, a)), summaries.get(
        (dataset, model, b))
    has_paper = any(paper.paper_lift(dataset, model, a, b, m) is not None
                    for m in paper.MAIN_METRICS)
    if label == "not run":
      missing = [f"{model} {mo}" for mo, s in ((a, sa), (b, sb)) if s is None]
      lines.append(f"- **{claim}**: not run (no finished seed of "
                   f"{' and '.join(missing) or 'a common seed'}).")
      continue
    parts = []
    for m, l in lifts.items():
      p = paper.paper_lift(dataset, model, a, b, m)
      how = (f"{l.n} seeds, std of Δ {l.std_delta:.4f}" if l.n >= 2
             else "1 seed")
      txt = f"{m} {_pct(l.relative)} ({how})"
      if p is not None:
        txt += f" vs paper {_pct(p)}"
        mag = _magnitude(l.relative, p)
        if mag and l.call in ("up", "up?", "flat"):
          txt += f": {mag}"
      parts.append(txt)
    lv, lt = (stats.lift(sa, sb, "valid", "NDCG@10"),
              lifts.get("NDCG@10") or stats.Lift(0))
    if lv.n and lt.n and lv.mean_delta * lt.mean_delta < 0:
      parts.append(f"validation NDCG@10 moves the other way "
                   f"({_pct(lv.relative)}): the two splits disagree")
    paper_note = "" if has_paper else (
        " The paper has no number for this pair on this dataset; the line "
        "checks its general claim.")
    lines.append(f"- **{claim}**: {label}. Test {'; '.join(parts)}."
                 + paper_note)
  # Absolute levels next to the paper.
  levels = []
  for model in models:
    for mode in modes:
      s = summaries.get((dataset, model, mode))
      p = paper.paper_value(dataset, model, mode, "NDCG@10")
      if s is not None and p is not None:
        ours = s.mean("test", "NDCG@10")
        levels.append(f"{_row_name(model, mode)} {ours:.4f} vs {p:.4f} "
                      f"(x{ours / p:.2f})")
  if levels:
    lines.append("- Absolute level, test NDCG@10 ours vs paper: "
                 + "; ".join(levels) + ". Differences in level come from "
                 "the setup (loss, preprocessing, tuning), not the method; "
                 "the claims above are about the lifts.")
  return lines


def generator_quality(states: Sequence[grid.CellState]) -> Optional[tuple]:
  """(cell name, {'generator'|'vae': {'HR@10', 'NDCG@10'}}) of the first
  cell whose generator phase logged its final validation ranking (the
  generator as a recommender, history masked), or None."""
  for st in states:
    path = os.path.join(st.workdir, "generator", "generator_metrics.jsonl")
    if not os.path.exists(path):
      continue
    # The phase evaluates once, at its end (older runs logged no 'final').
    evals = [r for r in rundir.read_jsonl(path)
             if r.get("kind") == "eval" and "generator" in r]
    if evals:
      return st.cell.name, evals[-1]
  return None


def generator_line(states: Sequence[grid.CellState], summaries: dict,
                   dataset: str, models: Sequence[str]) -> Optional[str]:
  """A bullet: the generator's validation ranking beside each backbone's
  base rows (how good a teacher the copies' candidates come from)."""
  found = generator_quality(states)
  if found is None:
    return None
  name, ev = found
  g, v = ev["generator"], ev.get("vae", {})
  text = (f"- Generator as a recommender (its final validation ranking, "
          f"history masked, from `{name}`'s generator_metrics.jsonl): "
          f"HR@10 {g['HR@10']:.4f} / NDCG@10 {g['NDCG@10']:.4f}")
  if v:
    text += f" (the VAE alone {v['HR@10']:.4f} / {v['NDCG@10']:.4f})"
  ratios = []
  for m in models:
    s = summaries.get((dataset, m, "base"))
    base = s.mean("valid", "NDCG@10") if s else None
    if base:
      ratios.append(f"{grid.MODEL_TITLES[m]} base {base:.4f} "
                    f"(generator x{g['NDCG@10'] / base:.2f})")
  if ratios:
    text += "; against the base rows' validation NDCG@10: " + "; ".join(
        ratios)
  return text + "."


def copies_line(states: Sequence[grid.CellState]) -> Optional[str]:
  """A bullet: the share of an augmented cell's copies that bring in no new
  item (a copy of N items replaces `augment.num_replaced` of them), read
  from its augmented.npz as the copies at similarity 1 (Eq. 11: a reordered
  copy has its original's mean embedding), which an easy-first curriculum
  admits first; None without such a file."""
  for st in states:
    path = os.path.join(st.workdir, "augmented.npz")
    if st.cell.mode not in ("aug", "diff4rec") or not os.path.exists(path):
      continue
    with np.load(path) as z:
      sim = z["sim"]
    flat = grid.flatten(st.config or {})
    ratio = f"ratio {flat.get('augment.ratio')}"
    if flat.get("augment.min_replaced"):
      ratio += f", min_replaced {flat['augment.min_replaced']}"
    share = float(np.mean(np.abs(sim - 1.0) < 1e-6))
    return (f"- Copies (`{st.cell.name}`'s augmented.npz, {ratio}): "
            f"{share:.1%} of them bring in no new item (similarity 1: "
            "reordered originals, the copies an easy-first curriculum "
            "admits first).")
  return None


def _not_run_text(states: Sequence[grid.CellState], models: Sequence[str],
                  modes: Sequence[str]) -> str:
  """'SASRec aug: seeds 1, 2; SASRec +Diff4Rec: seed 2 (partial: ...)'."""
  parts = []
  for m in models:
    for mo in modes:
      rows = [s for s in states if (s.cell.model, s.cell.mode) == (m, mo)
              and s.status != "done"]
      if not rows:
        continue
      todo = [str(s.cell.seed) for s in rows if s.status == "todo"]
      items = []
      if todo:
        items.append(f"seed{'s' if len(todo) > 1 else ''} {', '.join(todo)}")
      items += [f"seed {s.cell.seed} partial ({s.detail})" for s in rows
                if s.status == "partial"]
      parts.append(f"{_row_name(m, mo)}: {', '.join(items)}")
  return "; ".join(parts)


def _capped_text(states: Sequence[grid.CellState], models: Sequence[str],
                 modes: Sequence[str]) -> str:
  """'SASRec +Diff4Rec: seeds 0, 2 (200 epochs)' for finished cells that the
  epoch cap stopped (grid.cut_by_cap)."""
  parts = []
  for m in models:
    for mo in modes:
      rows = [s for s in states if (s.cell.model, s.cell.mode) == (m, mo)
              and s.status == "done" and grid.cut_by_cap(s.results)]
      if rows:
        parts.append(f"{_row_name(m, mo)}: " + ", ".join(
            f"seed {s.cell.seed} ({s.results['config']['train']['num_epochs']}"
            " epochs)" for s in rows))
  return "; ".join(parts)


def _deviation_text(st: grid.CellState) -> str:
  devs = grid.config_deviations(grid.expected_config(st.cell), st.config)
  return ", ".join(devs) if devs else "none"


def build_report(states: Sequence[grid.CellState], datasets: Sequence[str],
                 models: Sequence[str], modes: Sequence[str],
                 seeds: Sequence[int], root: str, command: str,
                 machine: str, plot_note: str,
                 plot_link: Optional[str] = None) -> str:
  """The Markdown report of the finished cells (pure: no files touched)."""
  summaries = stats.summarize(states)
  n_done = sum(s.status == "done" for s in states)
  L = []
  L.append("# Diff4Rec reproduction: our grid beside the paper\n")
  L.append(f"Generated {grid.now()} by `benchmarks/reproduce.py` from the "
           f"finished cells under `{root}` ({n_done} finished of the "
           f"{len(states)} cells that the command's datasets x models x "
           "modes x seeds name; the queues need not run them all). Only "
           "finished cells are counted; every number "
           "below comes from a `results.json` of a finished run or from the "
           "paper (Wu et al., ACM MM 2023, Tables 2-4).\n")
  L.append("## How this was made\n")
  L.append(f"- Command that wrote this report:\n\n  ```\n  {command}\n  ```\n")
  invocations = sorted({(st.last_attempt or {}).get("runner") for st in states
                        if st.status == "done"} - {None})
  if invocations:
    L.append("- Runner invocations that finished the cells:\n\n  ```\n"
             + "\n".join(f"  {c}" for c in invocations) + "\n  ```\n")
  setting = states[0].cell.setting if states else "strong"
  config_text = ("configs/paper.py:<dataset>" if setting == "paper"
                 else "configs/<dataset>.py")
  L.append(f"- Setting: {setting}.")
  L.append("- Each cell runs `python -m diff4rec_jax.main "
           f"--config={config_text} --workdir=<root>/<dataset>-<model>-"
           "<mode>-s<seed> --config.mode=<mode> --config.model.name=<model> "
           "--config.seed=<seed>` plus any overrides (listed per cell under "
           "*Cells*); a control cell runs its trainer mode with the "
           "control's fields after the overrides.")
  L.append(f"- Machine: {machine}.")
  devs = sorted({", ".join(st.results.get("devices", [])) for st in states
                 if st.status == "done" and st.results.get("devices")})
  if devs:
    L.append(f"- Devices recorded by the finished runs: {'; '.join(devs)}.")
  L.append("- Modes: `base` = the backbone alone (paper's SASRec/GRU4Rec/"
           "Caser rows); `aug` = diffusion augmentation without the "
           "curriculum (paper's *Diff4Rec w/o cur*, Table 4); `diff4rec` = "
           "augmentation with the curriculum (paper's *+Diff4Rec*). "
           "Controls (the paper has none): `popular` / `uniform` = "
           "diff4rec with the most popular / uniformly random unseen items "
           "as candidates instead of the generator's; `duplicate` = aug "
           "with copies equal to their originals (nothing replaced, no "
           "reorder): the augmented training without generated items.")
  shared = [st for st in states if st.augmented_from]
  if shared:
    L.append("- Shared augmentation: these cells reused the generated copies "
             "(`augmented.npz`) of their sibling of the other augmented mode "
             "(same dataset, backbone, seed and settings; train.py checks "
             "the file's config hash), so the pair differs only in the "
             "curriculum, as in the paper's Table 4 ablation: "
             + ", ".join(f"`{st.cell.name}` (from `{st.augmented_from}`)"
                         for st in shared) + ".")
  aug_cfg = next((grid.flatten(st.config) for st in states
                  if st.config and st.cell.mode in ("aug", "diff4rec")), None)
  if aug_cfg:
    fields = ("ratio", "reorder", "num_copies", "copies_per_batch",
              "loss_weight", "loss_norm", "schedule", "curriculum_direction",
              "exclude_history", "copy_source")
    L.append("- Augmentation of the aug and diff4rec cells (from the first "
             "one's config; per-cell changes are under *Cells*): "
             + ", ".join(f"`augment.{k}={aug_cfg.get('augment.' + k)}`"
                         for k in fields)
             + (f", `augment.min_replaced={aug_cfg['augment.min_replaced']}`"
                if aug_cfg.get("augment.min_replaced") else "") + ".")
  L.append("- Metrics: full ranking over all items, history masked, "
           "leave-one-out (as the paper). Model selection is on validation: "
           "each run keeps the epoch with the best validation NDCG@10 and "
           "reports test metrics of that checkpoint; *valid NDCG@10* below "
           "is that checkpoint's validation score.")
  L.append("- Our numbers: mean ± sample std (n − 1) over the finished "
           "seeds; n = number of seeds. Paper cells: the table they come "
           "from; — = the paper reports no number for that cell.")
  L.append("- Lift rule: for rows A and B, Δ_s = A_s − B_s for every seed s "
           "finished in both; relative lift = mean Δ / mean B over those "
           "seeds. A lift *exceeds one std* when |mean Δ| > the sample std "
           "of Δ_s (needs two paired seeds; with one seed the direction is "
           "shown but not judged). This is a 1-sigma band of seed-to-seed "
           "variation, not a significance test.")
  if plot_note:
    L.append(f"- {plot_note}")
  L.append("")

  L.append("## Verdicts at a glance\n")
  L.append("Test HR@10 and NDCG@10, finished cells only; details and the "
           "numbers are in each dataset's section.\n")
  L.append("| dataset | claim | verdict |")
  L.append("|---|---|---|")
  for ds in datasets:
    for _, _, _, claim, label, _ in stats.claim_results(
        ds, summaries, models, modes):
      L.append(f"| {ds} | {claim} | {label.split(' (')[0]} |")
  L.append("")

  for ds in datasets:
    L.append(f"## {grid.DATASET_TITLES.get(ds, ds)} (`{ds}`)\n")
    rows = [(m, mo) for m in models for mo in modes]
    ds_states = [s for s in states if s.cell.dataset == ds]
    L.append("Test HR@10 / NDCG@10 (ours beside the paper) and the "
             "validation NDCG@10 used for model selection:\n")
    L.append("| row | n | HR@10 | paper | NDCG@10 | paper | valid NDCG@10 "
             "| paper source |")
    L.append("|---|---|---|---|---|---|---|---|")
    for m, mo in rows:
      s = summaries.get((ds, m, mo))
      src = paper.PAPER.get((ds, m, mo), ("—",))[0]
      L.append(f"| {_row_name(m, mo)} | {s.n if s else 0} | "
               f"{_ms(s, 'test', 'HR@10')} | "
               f"{_pv(paper.paper_value(ds, m, mo, 'HR@10'))} | "
               f"{_ms(s, 'test', 'NDCG@10')} | "
               f"{_pv(paper.paper_value(ds, m, mo, 'NDCG@10'))} | "
               f"{_ms(s, 'valid', 'NDCG@10')} | {src} |")
    L.append("")
    L.append("Other test metrics (the paper reports these in Table 2 only; "
             "it has no NDCG@20):\n")
    hdr = "| row | n | " + " | ".join(
        f"{k} | paper" if k != "NDCG@20" else k
        for k in paper.MORE_METRICS) + " |"
    L.append(hdr)
    L.append("|---|---|" + "---|" * (2 * len(paper.MORE_METRICS) - 1))
    for m, mo in rows:
      s = summaries.get((ds, m, mo))
      cells = []
      for k in paper.MORE_METRICS:
        cells.append(_ms(s, "test", k))
        if k != "NDCG@20":
          cells.append(_pv(paper.paper_value(ds, m, mo, k)))
      L.append(f"| {_row_name(m, mo)} | {s.n if s else 0} | "
               + " | ".join(cells) + " |")
    L.append("")
    L.append("Lifts (paired by seed; see the lift rule above; rows with "
             "neither our nor the paper's number are left out):\n")
    L.append("| backbone | comparison | metric | ours: relative (mean Δ) | "
             "std of Δ | paired seeds | beyond 1 std? | paper relative |")
    L.append("|---|---|---|---|---|---|---|---|")
    for m in models:
      for a, b in paper.COMPARISONS:
        if a not in modes or b not in modes:
          continue
        sa, sb = summaries.get((ds, m, a)), summaries.get((ds, m, b))
        for split, k in paper.LIFT_METRICS:
          l = stats.lift(sa, sb, split, k)
          p = paper.paper_lift(ds, m, a, b, k) if split == "test" else None
          if l.n == 0 and p is None:
            continue
          if l.n == 0:
            ours, sd, beyond = "not run", "—", "—"
          else:
            ours = f"{_pct(l.relative)} ({l.mean_delta:+.4f})"
            sd = "—" if l.std_delta is None else f"{l.std_delta:.4f}"
            beyond = {"up": "yes, up", "down": "yes, down",
                      "flat": "no"}.get(l.call, "n/a (1 seed)")
          L.append(f"| {grid.MODEL_TITLES[m]} | {a} vs {b} | {split} {k} | "
                   f"{ours} | {sd} | {l.n} | {beyond} | "
                   f"{_pct(p) if p is not None else '—'} |")
    L.append("")
    L.append("**Verdict** (test metrics of finished cells only):\n")
    L.extend(verdict(ds, summaries, models, modes))
    for line in (generator_line(ds_states, summaries, ds, models),
                 copies_line(ds_states)):
      if line:
        L.append(line)
    capped = _capped_text(ds_states, models, modes)
    if capped:
      L.append("- Cut by the epoch cap (best validation epoch within the "
               "early-stopping window, so more epochs might have raised "
               "them; lifts involving these rows are measured at the "
               "grid's budget): " + capped + ".")
    not_run = _not_run_text(ds_states, models, modes)
    if not_run:
      L.append("- Not run (not counted anywhere above): " + not_run + ".")
    L.append("")

  if plot_link:
    L.append("## Validation NDCG@10 per epoch\n")
    L.append(f"SASRec, seed {seeds[0]}, one panel per dataset; an "
             "unfinished run is marked so in the legend.\n")
    L.append(f"![validation NDCG@10 per epoch]({plot_link})\n")
  L.extend(curve_tables(states, datasets, seeds[0]))
  L.append("## Cells\n")
  L.append("Every cell of the grid in run order. *Settings differing from "
           f"the config file* lists fields whose values differ from "
           f"`{config_text}` with the cell's mode, model and seed (e.g. "
           "fewer epochs in a shortened run; a base cell's generator and "
           "augmentation fields, unused there, are left out).\n")
  L.append("| cell | status | details | settings differing from the "
           "config file |")
  L.append("|---|---|---|---|")
  for st in states:
    status = {"done": "finished", "partial": "not run (partial)",
              "todo": "not run"}[st.status]
    L.append(f"| `{st.cell.name}` | {status} | {st.detail or '—'} | "
             f"{_deviation_text(st) if st.config else '—'} |")
  L.append("")
  return "\n".join(L)


def machine_description() -> str:
  """CPU model and count from /proc/cpuinfo, memory, and jax.devices()."""
  cpu = machine_info.cpu_model()
  mem = ""
  try:
    with open("/proc/meminfo") as f:
      kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    mem = f", {kb / 2**20:.0f} GiB RAM"
  except (OSError, StopIteration, ValueError):
    pass
  # In a child process: jax.devices() here would hold the accelerator (and,
  # on a GPU, most of its memory) for as long as the runner lives.
  try:
    out = subprocess.run(
        [sys.executable, "-c", "import jax; print('jax', jax.__version__, "
         "'devices', jax.devices())"], capture_output=True, text=True,
        timeout=300, check=True).stdout.strip().splitlines()
    devs = f"; {out[-1]}" if out else ""
  except (subprocess.SubprocessError, OSError) as e:
    devs = f"; jax devices unknown ({type(e).__name__})"
  return f"{os.cpu_count()} x {cpu}{mem}{devs}"


def curve_tables(states: Sequence[grid.CellState], datasets: Sequence[str],
                 seed: int, max_cols: int = 16) -> list:
  """Markdown lines: validation NDCG@10 at the evaluated epochs, per dataset.

  One row per model and mode at `seed`, finished or not (a partial cell's
  curve is what it has evaluated so far), so runs can be compared at the
  same epoch while the grid fills. Columns: the epochs evaluated by every
  row (thinned to at most `max_cols`), then each row's best so far.
  """
  out = []
  for ds in datasets:
    rows = [st for st in states if st.cell.dataset == ds
            and st.cell.seed == seed and st.curve]
    if not rows:
      continue
    common = sorted(set.intersection(*(set(e for e, _ in st.curve)
                                       for st in rows)))
    if len(common) > max_cols:
      step = -(-len(common) // max_cols)
      common = common[::-1][::step][::-1]    # keep the latest epoch
    if not out:
      out.append("Validation NDCG@10 by epoch, seed "
                 f"{seed} (every cell with evaluations, finished or not; "
                 "epochs that all rows of a dataset have evaluated):\n")
    out.append(f"**{grid.DATASET_TITLES.get(ds, ds)}**\n")
    out.append("| cell | status | " + " | ".join(f"ep {e}" for e in common)
               + " | best so far (epoch) |")
    out.append("|---|---|" + "---|" * len(common) + "---|")
    for st in rows:
      curve = dict(st.curve)
      best = max(st.curve, key=lambda r: r[1])
      out.append(f"| `{st.cell.name}` | {st.status} | "
                 + " | ".join(f"{curve[e]:.4f}" for e in common)
                 + f" | {best[1]:.4f} ({best[0]}) |")
    out.append("")
  return out


def write_plot(states: Sequence[grid.CellState], datasets: Sequence[str],
               seed: int, path: str) -> str:
  """Validation NDCG@10 per epoch, SASRec, one panel per dataset.

  Returns a note for the report (what was plotted, or why not).
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    import matplotlib.ticker  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return ("Plot skipped: matplotlib is not installed (`pip install "
            "matplotlib` and rerun with --report_only).")
  by_cell = {(s.cell.dataset, s.cell.model, s.cell.mode, s.cell.seed): s
             for s in states}
  fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8),
                           squeeze=False)
  for ax, ds in zip(axes[0], datasets):
    drawn = 0
    for mode in grid.ALL_MODES:
      st = by_cell.get((ds, "sasrec", mode, seed))
      if st is None or not st.curve:
        continue
      ep, v = zip(*st.curve)
      label = mode + ("" if st.status == "done" else " (unfinished)")
      ax.plot(ep, v, marker="o", markersize=3, label=label)
      drawn += 1
    ax.set_title(f"{ds}: SASRec, seed {seed}", fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("validation NDCG@10")
    ax.grid(alpha=0.3)
    if drawn:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, "no runs yet", ha="center", va="center",
              transform=ax.transAxes)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return (f"Plot: `{os.path.basename(path)}`, validation NDCG@10 per epoch "
          f"of SASRec seed {seed} in each mode, from the runs' "
          "metrics.jsonl.")


def write_report(cells: Sequence[grid.Cell], args, command: str,
                 machine: Optional[str] = None) -> str:
  """Writes the report and plot of `cells` under the flags' --root.

  `args`: reproduce.py's parsed flags (root, datasets, models, modes, seeds,
  report, plot, machine). Returns the report's text.
  """
  states = grid.inspect_grid(cells, args.root)
  note = write_plot(states, args.datasets, args.seeds[0], args.plot)
  print(note, flush=True)
  link = (os.path.relpath(args.plot, os.path.dirname(args.report))
          if note.startswith("Plot:") else None)
  text = build_report(states, args.datasets, args.models, args.modes,
                      args.seeds, args.root, command,
                      machine or args.machine or machine_description(), note,
                      link)
  os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
  runlog.atomic_write(args.report, text)
  print(f"wrote {args.report}", flush=True)
  return text
