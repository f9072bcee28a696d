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
  # Generator (paper 3.2-3.3; see results/generator.md for how the
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
  # ML-1M: 1.3 s/epoch on the 2-core CPU.
  c.generator.epochs = 50
  return c
