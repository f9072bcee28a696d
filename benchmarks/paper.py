"""The paper's numbers: Tables 2-4 of Wu et al., ACM MM 2023 (Diff4Rec).

Full ranking over all items, leave-one-out. The one transcription of the
tables in the repository: the grid's report (benchmarks/report.py) and
benchmarks/quality_table.py read them from here.

* `TABLE2`: (dataset, backbone or 'diff4rec') -> the `TABLE2_COLS` values;
  the 'diff4rec' column is SASRec + Diff4Rec (Tables 3/4 repeat it).
* `TABLE3`: (dataset, backbone) -> (HR@10, NDCG@10) of GRU4Rec and Caser
  + Diff4Rec.
* `TABLE4`: dataset -> (HR@10, NDCG@10) of SASRec + Diff4Rec w/o curriculum
  (the grid's mode 'aug').
* `PAPER`: all three keyed as the grid's rows, (dataset, model, mode).

Also the metrics and mode comparisons the report shows beside them.
"""

from __future__ import annotations

from typing import Optional

MAIN_METRICS = ("HR@10", "NDCG@10")
MORE_METRICS = ("HR@5", "HR@20", "NDCG@5", "NDCG@20", "MRR")
LIFT_METRICS = (("test", "HR@10"), ("test", "NDCG@10"),
                ("valid", "NDCG@10"))
# (mode A, mode B) pairs whose paired lift A over B the report tabulates.
COMPARISONS = (("diff4rec", "base"), ("aug", "base"), ("diff4rec", "aug"),
               ("diff4rec", "popular"), ("diff4rec", "uniform"),
               ("popular", "base"), ("uniform", "base"),
               ("aug", "duplicate"), ("duplicate", "base"))

TABLE2_COLS = ("HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "MRR")
# Table 2: the three backbones alone and Diff4Rec (on SASRec, as Table 3/4
# show: their SASRec+Diff4Rec cells equal Table 2's Diff4Rec column).
TABLE2 = {
    ("ml-1m", "gru4rec"): (0.0792, 0.1573, 0.2374, 0.0458, 0.0667, 0.0479),
    ("ml-1m", "caser"): (0.0813, 0.1556, 0.2528, 0.0512, 0.0740, 0.0673),
    ("ml-1m", "sasrec"): (0.1047, 0.1775, 0.2807, 0.0598, 0.0824, 0.0819),
    ("ml-1m", "diff4rec"): (0.1401, 0.2238, 0.3830, 0.0812, 0.1222, 0.1202),
    ("beauty", "gru4rec"): (0.0152, 0.0268, 0.0413, 0.0094, 0.0137, 0.0133),
    ("beauty", "caser"): (0.0158, 0.0263, 0.0427, 0.0109, 0.0149, 0.0113),
    ("beauty", "sasrec"): (0.0325, 0.0633, 0.0971, 0.0204, 0.0303, 0.0285),
    ("beauty", "diff4rec"): (0.0456, 0.0871, 0.1347, 0.0301, 0.0426, 0.0368),
    ("steam", "gru4rec"): (0.0340, 0.0561, 0.0905, 0.0126, 0.0268, 0.0213),
    ("steam", "caser"): (0.0396, 0.0680, 0.1011, 0.0227, 0.0315, 0.0296),
    ("steam", "sasrec"): (0.0464, 0.0880, 0.1316, 0.0224, 0.0402, 0.0350),
    ("steam", "diff4rec"): (0.0575, 0.1132, 0.1608, 0.0321, 0.0541, 0.0479),
    ("yelp", "gru4rec"): (0.0142, 0.0252, 0.0453, 0.0087, 0.0124, 0.0101),
    ("yelp", "caser"): (0.0139, 0.0247, 0.0451, 0.0083, 0.0122, 0.0103),
    ("yelp", "sasrec"): (0.0153, 0.0286, 0.0481, 0.0089, 0.0134, 0.0119),
    ("yelp", "diff4rec"): (0.0198, 0.0411, 0.0595, 0.0125, 0.0171, 0.0157),
}
# Table 3: +Diff4Rec on GRU4Rec and Caser (HR@10, NDCG@10).
TABLE3 = {
    ("beauty", "gru4rec"): (0.0372, 0.0190),
    ("beauty", "caser"): (0.0375, 0.0214),
    ("steam", "gru4rec"): (0.0691, 0.0342),
    ("steam", "caser"): (0.0838, 0.0443),
    ("yelp", "gru4rec"): (0.0336, 0.0161),
    ("yelp", "caser"): (0.0351, 0.0161),
}
# Table 4: SASRec + Diff4Rec w/o curriculum = our mode 'aug' (HR@10, NDCG@10).
TABLE4 = {"beauty": (0.0850, 0.0417), "steam": (0.1108, 0.0524),
          "yelp": (0.0410, 0.0165)}


def _paper_table() -> dict:
  out = {}
  for (ds, name), vals in TABLE2.items():
    if name == "diff4rec":
      src = "Table 2/3" if ds != "ml-1m" else "Table 2"
      out[(ds, "sasrec", "diff4rec")] = (src, dict(zip(TABLE2_COLS, vals)))
    else:
      src = "Table 2/3" if ds != "ml-1m" else "Table 2"
      out[(ds, name, "base")] = (src, dict(zip(TABLE2_COLS, vals)))
  for (ds, model), vals in TABLE3.items():
    out[(ds, model, "diff4rec")] = ("Table 3", dict(zip(MAIN_METRICS, vals)))
  for ds, vals in TABLE4.items():
    out[(ds, "sasrec", "aug")] = ("Table 4", dict(zip(MAIN_METRICS, vals)))
  return out


# (dataset, model, mode) -> (source, {metric: value}).
PAPER = _paper_table()


def paper_value(dataset: str, model: str, mode: str,
                metric: str) -> Optional[float]:
  """The paper's `metric` of a grid row, or None where it reports none."""
  return PAPER.get((dataset, model, mode), (None, {}))[1].get(metric)


def paper_lift(dataset: str, model: str, mode_a: str, mode_b: str,
               metric: str) -> Optional[float]:
  """The paper's relative lift of row `mode_a` over `mode_b` on `metric`."""
  a = paper_value(dataset, model, mode_a, metric)
  b = paper_value(dataset, model, mode_b, metric)
  return (a - b) / b if a is not None and b else None
