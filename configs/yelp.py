"""Yelp (S3-Rec version): short sequences with repeat visits, 20K items."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "yelp"
  c.data.max_len = 50
  c.model.hidden = 64
  c.model.num_blocks = 2
  c.model.dropout = 0.5
  c.train.loss = "ce"
  c.train.batch_size = 128
  c.train.num_epochs = 200
  c.train.eval_every = 5
  c.train.patience = 5
  c.train.length_buckets = (8, 16, 32)
  c.train.eval_batch_size = 512
  c.train.eval_item_chunk = 8192
  return c
