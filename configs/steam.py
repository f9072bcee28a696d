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
  # Generator (paper 3.2-3.3; see results/log/generator.md for how the
  # defaults were chosen). The paper gives no values.
  c.generator.latent_size = 64
  c.generator.encoder_hidden = (300,)
  c.generator.steps = 5                # T
  c.generator.schedule = "linear"
  c.generator.inference_step = 5
  c.generator.lam = 1.0                # lambda of Eq. 8
  c.generator.lr = 1e-3
  c.generator.top_m = 100              # M
  c.augment.top_m = c.generator.top_m  # must equal it (validated)
  # Steam scale: ~130 s/epoch on the 2-core CPU (synthetic set).
  c.generator.epochs = 10
  return c
