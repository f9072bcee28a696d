"""ML-100K, a few small epochs: for tests and smoke runs on a CPU."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "ml-100k"
  c.data.max_len = 50
  c.model.hidden = 32
  c.model.num_blocks = 1
  c.model.dropout = 0.1
  c.train.batch_size = 64
  c.train.num_epochs = 4
  c.train.eval_every = 2
  c.train.patience = 2
  c.train.checkpoint_every = 1
  c.train.eval_batch_size = 128
  c.train.eval_item_chunk = 512
  return c
