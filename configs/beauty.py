"""Amazon Beauty (BERT4Rec version): short sequences, 54K items."""

from configs import base


def get_config():
  c = base.get_config()
  c.data.name = "beauty"
  c.data.max_len = 50
  c.model.dropout = 0.5
  c.train.length_buckets = (8, 16, 32)
  c.train.eval_batch_size = 512
  c.train.eval_item_chunk = 8192
  # Generator: base.py's (results/log/generator.md); only the epochs differ.
  # Beauty: 45 s/epoch on the 2-core CPU in session 14 (190 s in session
  # 3's log; the 54K-item decoder dominates). 10 epochs is what
  # results/log/generator.md measured.
  c.generator.epochs = 10
  return c
