"""Config checks: out-of-range values fail at start, naming the field.

`validate(config)` checks every block it knows; the generator and
augmentation blocks are checked by their own modules' validators. Unknown
fields are already refused by ml_collections (configs are locked) when given
as `--config.field=value`.

`check_workdir(config, workdir)` refuses to resume a workdir whose saved
config differs in anything that changes the result.
"""

from __future__ import annotations

import json
import math
import os

from absl import logging
import ml_collections

from diff4rec_jax import models
from diff4rec_jax.models import dropout as dropout_lib

# Fields that may differ between a run and its resumption: they change how a
# run is carried out or reported, not what it computes. The speed settings
# (`model.attn_blocks`, `train.micro_batch`, `model.dropout_rng`,
# `cpu_devices`) give the same model and update; only the random draws
# (dropout, negatives) may differ. `train.eval_length_buckets` changes only
# how evaluation batches are cut.
RESUMABLE_FIELDS = ("data.dir", "data.path", "train.log_every_steps",
                    "model.attn_blocks", "train.micro_batch",
                    "model.dropout_rng", "cpu_devices",
                    "train.eval_length_buckets")


def sub_block(config, name: str):
  """`config.<name>` of a full config, or `config` if it is that block."""
  if isinstance(config, ml_collections.ConfigDict) and name in config:
    return config[name]
  return config


def field_error(field: str, msg: str, value, prefix: str = "") -> ValueError:
  """ValueError 'config.<prefix><field>: <msg>, got <value>'."""
  return ValueError(f"config.{prefix}{field}: {msg}, got {value!r}")


def check_int(c, field: str, lo: int, prefix: str = "",
              msg: str = "") -> None:
  """`c.<field>` must be an int (not a bool) >= lo."""
  v = _get(c, field)
  if not isinstance(v, int) or isinstance(v, bool) or v < lo:
    raise field_error(field, msg or f"must be an integer >= {lo}", v, prefix)


def check_number(c, field: str, lo: float, hi=None, lo_open: bool = False,
                 hi_open: bool = False, prefix: str = "") -> None:
  """`c.<field>` must be a finite number in [lo, hi] (open ends as asked;
  hi=None: no upper bound)."""
  v = _get(c, field)
  if (not isinstance(v, (int, float)) or isinstance(v, bool)
      or not math.isfinite(v)):
    raise field_error(field, "must be a finite number", v, prefix)
  too_high = hi is not None and (v >= hi if hi_open else v > hi)
  if (v <= lo if lo_open else v < lo) or too_high:
    lb = "(" if lo_open else "["
    rb = ")" if hi_open or hi is None else "]"
    raise field_error(field, f"must be in {lb}{lo}, "
                      f"{'inf' if hi is None else hi}{rb}", v, prefix)


_err = field_error


def _positive_int(c, field):
  check_int(c, field, 1, msg="must be a positive integer")


def _in_range(c, field, lo, hi, lo_open=False, hi_open=False):
  check_number(c, field, lo, hi, lo_open, hi_open)


def check_choice(c, field: str, choices, prefix: str = "") -> None:
  """`c.<field>` must be one of `choices`."""
  v = _get(c, field)
  if v not in choices:
    raise field_error(field, f"must be one of {tuple(choices)}", v, prefix)


_choice = check_choice


def _get(c, field):
  for part in field.split("."):
    c = c[part]
  return c


def validate(config) -> None:
  """Raises ValueError naming the first bad field."""
  _choice(config, "mode", ("base", "aug", "diff4rec"))
  _choice(config, "rng_impl", ("rbg", "threefry2x32", "unsafe_rbg"))
  v = config.get("cpu_devices", 0)
  if not isinstance(v, int) or v < -1:
    raise _err("cpu_devices", "must be -1 (auto), 0 (JAX's default) or a "
               "positive integer", v)
  if not isinstance(config.seed, int):
    raise _err("seed", "must be an integer", config.seed)
  _choice(config, "data.format", ("auto", "pair", "per_user"))
  v = config.data.max_len
  if not isinstance(v, int) or v < 2:
    raise _err("data.max_len", "must be an integer >= 2", v)
  v = config.data.train_windows
  if not isinstance(v, int) or v < 0:
    raise _err("data.train_windows", "must be an integer >= 0 (0 = every "
               "window)", v)
  _choice(config, "model.name", models.RECOMMENDERS)
  for f in ("model.hidden", "model.num_blocks", "model.num_heads",
            "model.attn_blocks",
            "model.caser_window", "model.caser_h_filters",
            "model.caser_v_filters"):
    _positive_int(config, f)
  if config.model.hidden % config.model.num_heads:
    raise _err("model.hidden", "must be divisible by model.num_heads "
               f"({config.model.num_heads})", config.model.hidden)
  _in_range(config, "model.dropout", 0.0, 1.0, hi_open=True)
  _choice(config, "model.dropout_rng", dropout_lib.METHODS)
  _in_range(config, "model.init_std", 0.0, 1.0)
  _choice(config, "model.attn_dropout", ("shared", "per_row"))
  _choice(config, "model.qkv_init", ("dense", "torch"))
  _choice(config, "model.positions", ("newest", "oldest"))
  _choice(config, "model.dtype", ("float32", "bfloat16"))
  if config.model.dtype != "float32" and config.model.name != "sasrec":
    raise _err("model.dtype", f"{config.model.dtype} is implemented for "
               "model.name='sasrec' only", config.model.dtype)
  _choice(config, "train.loss", ("ce", "bce", "sampled_ce"))
  _choice(config, "train.negative_sampler", ("uniform", "popularity"))
  _positive_int(config, "train.num_negatives")
  _choice(config, "train.optimizer", ("adam", "adamw"))
  _choice(config, "train.loss_norm", ("batch", "epoch"))
  _choice(config, "train.lr_schedule", ("constant", "cosine"))
  w = config.train.lr_warmup_epochs
  if not isinstance(w, int) or not 0 <= w < config.train.num_epochs:
    raise _err("train.lr_warmup_epochs", "must be an integer in [0, "
               "train.num_epochs)", w)
  for f in ("train.batch_size", "train.num_epochs", "train.eval_every",
            "train.patience", "train.checkpoint_every",
            "train.eval_batch_size", "train.eval_item_chunk"):
    _positive_int(config, f)
  if config.train.eval_item_chunk % 32:
    raise _err("train.eval_item_chunk", "must be a multiple of 32",
               config.train.eval_item_chunk)
  for f in ("train.length_buckets", "train.eval_length_buckets"):
    for w in _get(config, f):
      if not isinstance(w, int) or w < 1:
        raise _err(f, "must hold positive integers", _get(config, f))
  v = config.train.get("micro_batch", 0)
  if not isinstance(v, int) or v < -1:
    raise _err("train.micro_batch", "must be -1 (auto), 0 (off) or a "
               "positive integer", v)
  for f in ("batch_size", "eval_batch_size"):
    b = config.train[f]
    if v > 0 and v < b and b % v:
      raise _err("train.micro_batch", f"must divide train.{f} ({b})", v)
  if not isinstance(config.train.log_every_steps, int) or (
      config.train.log_every_steps < 0):
    raise _err("train.log_every_steps", "must be an integer >= 0",
               config.train.log_every_steps)
  _in_range(config, "train.lr", 0.0, 10.0, lo_open=True)
  _in_range(config, "train.b1", 0.0, 1.0, hi_open=True)
  _in_range(config, "train.b2", 0.0, 1.0, hi_open=True)
  _in_range(config, "train.weight_decay", 0.0, 10.0)
  _in_range(config, "train.ema_decay", 0.0, 1.0, hi_open=True)
  # The generator and augmentation blocks check themselves (with the
  # helpers above; imported here because they import this module).
  from diff4rec_jax import augment  # pylint: disable=g-import-not-at-top
  from diff4rec_jax import generator  # pylint: disable=g-import-not-at-top
  generator.validate_generator_config(config)
  augment.validate_augment_config(config)


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def check_workdir(config, workdir: str) -> None:
  """Refuses a workdir whose config.json differs from `config`."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    try:
      saved = _flatten(json.load(f))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: unreadable ({e}); use a fresh workdir") from e
  now = _flatten(json.loads(json.dumps(config.to_dict())))
  # The generator and augmentation settings do not touch a 'base' run.
  unused = ("generator.", "augment.") if (
      config.mode == "base" and saved.get("mode") == "base") else ()
  # A field the saved config lacks was added to the code after that run
  # started; the run used the code's behaviour of its time.
  added = sorted(k for k in set(now) - set(saved) if not k.startswith(unused))
  if added:
    logging.warning("workdir %s: config fields added since this run began: "
                    "%s (taking their current values)", workdir, added)
  diffs = [k for k in sorted(set(saved) | set(now))
           if k not in RESUMABLE_FIELDS and k not in added and
           not k.startswith(unused) and saved.get(k) != now.get(k)]
  if diffs:
    shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
                      for k in diffs[:5])
    raise ValueError(
        f"workdir {workdir} belongs to a different config ({shown}"
        f"{', ...' if len(diffs) > 5 else ''}); refusing to resume. Use "
        "another --workdir or restore the original settings.")
