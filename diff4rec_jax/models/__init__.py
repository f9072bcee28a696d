"""Sequence encoders and the generator's networks.

Every recommender maps an item sequence `[B, L]` (left-padded, 0 = pad) to
hidden states `[B, L, D]` and owns an `item_embed` table `[N + 1, D]`; item
scores are hidden states times that table (see `item_table`).
"""

from diff4rec_jax.models.caser import Caser
from diff4rec_jax.models.gru4rec import GRU4Rec
from diff4rec_jax.models.sasrec import SASRec

RECOMMENDERS = ("sasrec", "gru4rec", "caser")


def get_model(model_config, num_items: int, max_len: int):
  """Builds the recommender that `config.model.name` names."""
  name = model_config.name
  common = dict(num_items=num_items, hidden=model_config.hidden,
                dropout=model_config.dropout, max_len=max_len,
                dropout_rng=model_config.get("dropout_rng", "hash"))
  if name == "sasrec":
    return SASRec(num_blocks=model_config.num_blocks,
                  num_heads=model_config.num_heads,
                  init_std=model_config.get("init_std", 0.0),
                  attn_blocks=model_config.get("attn_blocks", 1),
                  attn_dropout=model_config.get("attn_dropout", "shared"),
                  qkv_init=model_config.get("qkv_init", "dense"),
                  positions=model_config.get("positions", "newest"),
                  dtype=model_config.get("dtype", "float32"),
                  **common)
  if name == "gru4rec":
    return GRU4Rec(num_blocks=model_config.num_blocks, **common)
  if name == "caser":
    return Caser(window=model_config.caser_window,
                 h_filters=model_config.caser_h_filters,
                 v_filters=model_config.caser_v_filters, **common)
  raise ValueError(f"config.model.name: unknown model {name!r}; expected one "
                   f"of {RECOMMENDERS}")


def item_table(params):
  """The shared item-embedding table `[N + 1, D]` of a recommender."""
  return params["item_embed"]["embedding"]
