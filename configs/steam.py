"""Steam (BERT4Rec version: 281,428 users, 13,044 items).

The data is fetched and preprocessed on first use (datasets/prepare.py, from the
public Steam review data of the SASRec authors). For speed and memory
checks without it, use data.name='synthetic-steam' (a synthetic set of the
same shape; never a quality result).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "steam"
  c.data.max_len = 50
  c.model.dropout = 0.5
  c.train.batch_size = 256
  c.train.num_epochs = 100
  c.train.eval_every = 2
  c.train.length_buckets = (8, 16, 32)
  c.train.eval_batch_size = 1024
  c.train.log_every_steps = 200
  # Generator: base.py's (results/log/generator.md); only the epochs differ.
  # Steam scale: ~130 s/epoch on the 2-core CPU (synthetic set).
  c.generator.epochs = 10
  return c
