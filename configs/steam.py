"""Steam (BERT4Rec version: 281,428 users, 13,044 items).

The data is fetched and preprocessed on first use (prepare.py, from the
public Steam review data of the SASRec authors). For speed and memory
checks without it, use data.name='synthetic-steam' (a synthetic set of the
same shape; never a quality result).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "steam"
  c.data.max_len = 50
  c.model.hidden = 64
  c.model.num_blocks = 2
  c.model.dropout = 0.5
  c.train.loss = "ce"
  c.train.batch_size = 256
  c.train.num_epochs = 100
  c.train.eval_every = 2
  c.train.patience = 5
  c.train.length_buckets = (8, 16, 32)
  c.train.eval_batch_size = 1024
  c.train.eval_item_chunk = 4096
  c.train.log_every_steps = 200
  return c
