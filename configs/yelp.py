"""Yelp (S3-Rec version): short sequences with repeat visits, 20K items."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "yelp"
  c.data.max_len = 50
  c.model.dropout = 0.5
  c.train.length_buckets = (8, 16, 32)
  c.train.eval_batch_size = 512
  c.train.eval_item_chunk = 8192
  # Generator: base.py's (results/log/generator.md); only the epochs differ.
  # Yelp: 20-30 s/epoch on the 2-core CPU; the grid's setting.
  c.generator.epochs = 30
  return c
