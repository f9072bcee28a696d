"""Config checks: out-of-range values fail at start, naming the field.

`validate(config)` checks every block (`validate_generator_config` and
`validate_augment_config` also check their block alone). Unknown
fields are already refused by ml_collections (configs are locked) when given
as `--config.field=value`.

`check_workdir(config, workdir)` refuses to resume a workdir whose saved
config differs in anything that changes the result.

`unknown_field_error(config, path)` names a `--config.<path>` override that
the config lacks and the nearest valid fields.

Every refusal is an `errors.UserError` (main.py prints it without a
traceback).
"""

from __future__ import annotations

import difflib
import json
import math
import os

from absl import logging
import ml_collections

from diff4rec_jax import candidates as candidates_lib
from diff4rec_jax import curriculum
from diff4rec_jax import diffusion
from diff4rec_jax import errors
from diff4rec_jax import models
from diff4rec_jax.models import denoiser as denoiser_lib
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

# The generator and augmentation settings do not touch a 'base' run.
BASE_UNUSED = ("generator.", "augment.")


def sub_block(config, name: str):
  """`config.<name>` of a full config, or `config` if it is that block."""
  if isinstance(config, ml_collections.ConfigDict) and name in config:
    return config[name]
  return config


class ConfigError(errors.UserError):
  """A config value or override is refused; the message names the field."""


def field_error(field: str, msg: str, value, prefix: str = "") -> ValueError:
  """ConfigError 'config.<prefix><field>: <msg>, got <value>'."""
  return ConfigError(f"config.{prefix}{field}: {msg}, got {value!r}")


def unknown_field_error(config, path: str) -> "ConfigError | None":
  """A ConfigError naming `path` ('train.nonexistent') and the nearest valid
  fields if `config` lacks it; None if it has it."""
  node, done = config, []
  for part in path.split("."):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      where = "config" + "".join(f".{p}" for p in done)
      near = difflib.get_close_matches(part, keys, n=3, cutoff=0.5)
      hint = (f"did you mean {', '.join(f'{where}.{k}' for k in near)}?"
              if near else f"the fields of {where} are: "
              f"{', '.join(sorted(keys)) or '(none: it is a value)'}")
      return ConfigError(f"config.{path}: no such field ({where} has no "
                         f"{part!r}); {hint}")
    node = node[part]
    done.append(part)
  return None


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
  if (config.model.name == "caser" and
      config.model.caser_window > config.data.max_len):
    # Caser convolves over the last caser_window items; a longer window
    # only pads (measured: a 6-minute compile and about 10 GB).
    raise _err("model.caser_window", "must be at most data.max_len "
               f"({config.data.max_len})", config.model.caser_window)
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
  validate_generator_config(config)
  validate_augment_config(config)


# -- generator block ----------------------------------------------------------
def _gerr(field, msg, value):
  return field_error(field, msg, value, "generator.")


def _gint(g, f, lo):
  check_int(g, f, lo, "generator.")


def _gnum(g, f, lo, hi, lo_open=False, hi_open=False):
  check_number(g, f, lo, hi, lo_open, hi_open, "generator.")


def _gchoice(g, f, choices):
  check_choice(g, f, choices, "generator.")


def _gwidths(g, f, allow_empty):
  v = g[f]
  if (not isinstance(v, (tuple, list)) or (not v and not allow_empty) or
      any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in v)):
    raise _gerr(f, "must be a " + ("" if allow_empty else "non-empty ") +
                "tuple of positive integers", v)


def validate_generator_config(config, num_items: int | None = None) -> None:
  """Raises ValueError naming the first out-of-range generator field.

  Args:
    config: the full config or its `generator` block.
    num_items: if given, also checks top_m against the item count.
  """
  g = sub_block(config, "generator")
  if not isinstance(g.enabled, bool):
    raise _gerr("enabled", "must be True or False", g.enabled)
  if "seed" in g:
    _gint(g, "seed", -1)
  _gint(g, "latent_size", 1)
  _gwidths(g, "encoder_hidden", allow_empty=True)
  _gwidths(g, "decoder_hidden", allow_empty=True)
  _gwidths(g, "denoiser_hidden", allow_empty=True)
  _gchoice(g, "act", tuple(denoiser_lib.ACTIVATIONS))
  _gnum(g, "dropout", 0.0, 1.0, hi_open=True)
  _gnum(g, "denoiser_dropout", 0.0, 1.0, hi_open=True)
  _gchoice(g, "encoder_input", ("bag", "dense"))
  _gint(g, "history_cap", 0)
  _gint(g, "bag_chunk", 0)
  _gint(g, "batch_tokens", 0)
  _gnum(g, "kl_anneal_cap", 0.0, 1e6)
  _gint(g, "kl_anneal_steps", 0)
  _gint(g, "time_emb_size", 1)
  _gint(g, "steps", 1)
  _gchoice(g, "schedule", diffusion.SCHEDULES)
  _gnum(g, "noise_scale", 0.0, 1.0, lo_open=True)
  _gnum(g, "noise_min", 0.0, 1.0, lo_open=True, hi_open=True)
  _gnum(g, "noise_max", 0.0, 1.0, lo_open=True, hi_open=True)
  if g.noise_min > g.noise_max:
    raise _gerr("noise_min", f"must be <= noise_max ({g.noise_max})",
                g.noise_min)
  _gchoice(g, "predict", diffusion.PREDICT)
  _gnum(g, "lam", 0.0, 1e6)
  if not isinstance(g.stop_grad_z0, bool):
    raise _gerr("stop_grad_z0", "must be True or False", g.stop_grad_z0)
  v = g.inference_step
  if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= g.steps:
    raise _gerr("inference_step", f"must be an integer in 0..steps "
                f"({g.steps})", v)
  if not isinstance(g.sampling_noise, bool):
    raise _gerr("sampling_noise", "must be True or False", g.sampling_noise)
  _gint(g, "top_m", 1)
  if num_items is not None and g.top_m > num_items:
    raise _gerr("top_m", f"must be <= the number of items ({num_items})",
                g.top_m)
  _gchoice(g, "prob_norm", ("all", "topm"))
  _gint(g, "infer_batch_size", 1)
  _gnum(g, "lr", 0.0, 10.0, lo_open=True)
  _gnum(g, "weight_decay", 0.0, 10.0)
  _gint(g, "batch_size", 1)
  _gint(g, "epochs", 0)
  _gint(g, "checkpoint_every", 0)
  if not isinstance(g.eval_at_end, bool):
    raise _gerr("eval_at_end", "must be True or False", g.eval_at_end)
  # Catch degenerate schedules (e.g. betas that reach 1) here, by name.
  try:
    diffusion.make_betas(g.schedule, g.steps, g.noise_scale, g.noise_min,
                         g.noise_max)
  except ValueError as e:
    raise _gerr("noise_scale", f"gives an invalid schedule ({e})",
                g.noise_scale) from e


# -- augment block ------------------------------------------------------------
PACINGS = tuple(k for k in curriculum.PACING_KINDS if k != "none")
SIMILARITY_SOURCES = ("warmup", "checkpoint")
CANDIDATES = ("generator",) + candidates_lib.KINDS + ("teacher",)


def _aerr(field, msg, value):
  return field_error(field, msg, value, "augment.")


def validate_augment_config(config) -> None:
  """Raises ValueError naming the first bad field of `config.augment`.

  Accepts the full config or the augment block itself. Given the full config
  of a run that augments (mode != 'base') with `generator.top_m`, also
  checks that `augment.top_m` matches it.
  """
  a = sub_block(config, "augment")
  for f in ("num_copies", "candidates", "exclude_history", "copy_source",
            "loss_norm",
            "schedule",
            "bucket_copies", "ratio", "min_replaced", "top_m", "temperature",
            "reorder",
            "copies_per_batch", "loss_weight", "pacing", "pacing_start",
            "pacing_end", "pacing_stages", "pacing_epochs",
            "curriculum_scope", "curriculum_direction", "similarity_source",
            "similarity_checkpoint", "warmup_epochs", "rescore_every",
            "batch_size"):
    if f not in a:
      raise _aerr(f, "is missing", None)

  def need_int(f, lo):
    check_int(a, f, lo, "augment.")

  def need_num(f, lo, hi, lo_open=False):
    check_number(a, f, lo, hi, lo_open, prefix="augment.")

  need_int("num_copies", 1)
  if a.candidates not in CANDIDATES:
    raise _aerr("candidates", f"must be one of {CANDIDATES}", a.candidates)
  if a.candidates == "teacher" and not a.get("teacher_workdir"):
    raise _aerr("teacher_workdir", "must name a finished run's workdir when "
                "candidates='teacher'", a.get("teacher_workdir"))
  if not isinstance(a.exclude_history, bool):
    raise _aerr("exclude_history", "must be True or False", a.exclude_history)
  if a.copy_source not in ("recent", "prefix"):
    raise _aerr("copy_source", "must be one of ('recent', 'prefix')",
                a.copy_source)
  if a.loss_norm not in ("mean", "sum"):
    raise _aerr("loss_norm", "must be one of ('mean', 'sum')", a.loss_norm)
  if a.schedule not in ("paced", "pop"):
    raise _aerr("schedule", "must be one of ('paced', 'pop')", a.schedule)
  if not isinstance(a.bucket_copies, bool):
    raise _aerr("bucket_copies", "must be True or False", a.bucket_copies)
  need_num("ratio", 0.0, 1.0)
  need_int("min_replaced", 0)
  need_int("top_m", 1)
  need_num("temperature", 0.0, None, lo_open=True)
  if not isinstance(a.reorder, bool):
    raise _aerr("reorder", "must be True or False", a.reorder)
  need_num("copies_per_batch", 0.0, None)
  need_num("loss_weight", 0.0, None)
  if a.pacing not in PACINGS:
    raise _aerr("pacing", f"must be one of {PACINGS}", a.pacing)
  if a.curriculum_scope not in curriculum.SCOPES:
    raise _aerr("curriculum_scope", f"must be one of {curriculum.SCOPES}",
                a.curriculum_scope)
  if a.curriculum_direction not in curriculum.DIRECTIONS:
    raise _aerr("curriculum_direction", f"must be one of {curriculum.DIRECTIONS}",
                a.curriculum_direction)
  need_num("pacing_start", 0.0, 1.0, lo_open=True)
  need_num("pacing_end", 0.0, 1.0, lo_open=True)
  need_int("pacing_stages", 1)
  need_int("pacing_epochs", 0)
  if a.similarity_source not in SIMILARITY_SOURCES:
    raise _aerr("similarity_source", f"must be one of {SIMILARITY_SOURCES}",
                a.similarity_source)
  if a.similarity_source == "checkpoint" and not a.similarity_checkpoint:
    raise _aerr("similarity_checkpoint",
                "must name a checkpoint when similarity_source='checkpoint'",
                a.similarity_checkpoint)
  need_int("warmup_epochs", 0)
  need_int("rescore_every", 0)
  need_int("batch_size", 1)
  if (isinstance(config, ml_collections.ConfigDict) and "augment" in config
      and config.get("mode", "") != "base" and "generator" in config
      and "top_m" in config.generator
      and config.generator.top_m != a.top_m):
    raise _aerr("top_m", f"must equal config.generator.top_m "
                f"({config.generator.top_m})", a.top_m)


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
      raise errors.UserError(
          f"{path}: unreadable ({e}); use a fresh workdir") from e
  now = _flatten(json.loads(json.dumps(config.to_dict())))
  unused = BASE_UNUSED if (
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
    raise errors.UserError(
        f"workdir {workdir} belongs to a different config ({shown}"
        f"{', ...' if len(diffs) > 5 else ''}); refusing to resume. Use "
        "another --workdir or restore the original settings.")
