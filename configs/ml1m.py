"""MovieLens-1M: SASRec, full-softmax CE (the strong SASRec+ setting)."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "ml-1m"
  c.data.max_len = 200
  c.model.hidden = 64
  c.model.num_blocks = 2
  c.model.num_heads = 1
  c.model.dropout = 0.2
  c.train.loss = "ce"
  c.train.batch_size = 128
  c.train.num_epochs = 200
  c.train.lr = 1e-3
  c.train.eval_every = 5
  c.train.patience = 5
  c.train.length_buckets = (32, 64, 128)
  return c
