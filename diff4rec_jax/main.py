"""Command line: `python -m diff4rec_jax.main --config=configs/ml1m.py
--workdir=runs/ml1m [--config.field=value ...]`.

Exit codes: 0 done (or already finished); 2 a user error (bad data, config
or override, refused workdir, lock held, disk full): one `error:` line on
stderr, no traceback; 128 + signal (143 for SIGTERM, 130 for Ctrl-C) when
stopped by a signal after saving a checkpoint (rerun to resume). Anything
else is a bug and keeps its traceback.
"""

import logging as std_logging
import os
import runpy
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from diff4rec_jax import errors
from diff4rec_jax import sharding

_CONFIG = config_flags.DEFINE_config_file("config", None,
                                          "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, "
                               "metrics and results; rerun to resume.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", os.environ.get("DIFF4REC_DISTRIBUTED", "") == "1",
    "Call jax.distributed.initialize() first (multi-host runs).")


def _batch_sizes(config) -> list[int]:
  """The user-facing batch sizes that the device count must divide."""
  sizes = [config.train.batch_size, config.train.eval_batch_size]
  if config.mode != "base" and config.generator.enabled:
    sizes.append(config.generator.batch_size)
  return sizes


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Orbax logs every save and restore at INFO; keep the run's own lines.
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(lambda r: "orbax" not in r.pathname or
                      r.levelno >= std_logging.WARNING)
  config = _CONFIG.value
  if config.get("cpu_devices", 0):
    n = config.cpu_devices
    if n == -1:
      n = sharding.auto_cpu_devices(_batch_sizes(config))
    if sharding.split_cpu(n):
      logging.info("cpu_devices: the CPU backend runs as %d devices, "
                   "data-parallel over the batch", n)
  if _DISTRIBUTED.value:
    num = os.environ.get("DIFF4REC_NUM_PROCESSES")
    pid = os.environ.get("DIFF4REC_PROCESS_ID")
    if num and pid:
      # Explicit values (launch/multi_gpu.sh): skip JAX's SLURM detection,
      # which would give each process only GPU $SLURM_LOCALID.
      jax.distributed.initialize(num_processes=int(num),
                                 process_id=int(pid),
                                 cluster_detection_method="deactivate")
    else:
      jax.distributed.initialize()   # TPU VM / srun: detected
  logging.info("JAX devices: %s (process %d of %d)", jax.devices(),
               jax.process_index(), jax.process_count())
  from diff4rec_jax import runlog
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except runlog.Interrupted as e:
    # Preemption (SIGTERM/SIGINT): the checkpoint is saved. Exit 128 +
    # signal, so that a scheduler does not read the stop as success.
    logging.warning("%s. Rerun the same command to resume.", e)
    if e.signum:
      sys.exit(128 + int(e.signum))
  except errors.UserError as e:
    _user_error(e)


def _user_error(e: Exception) -> None:
  print(f"error: {e}", file=sys.stderr, flush=True)
  sys.exit(errors.USER_ERROR_EXIT)


def _unknown_override(argv):
  """The error for a `--config.<field>=...` the config file lacks, or None."""
  from diff4rec_jax import config_lib  # pylint: disable=g-import-not-at-top
  path = next((a.split("=", 1)[1] for a in argv
               if a.startswith("--config=")), None)
  if path is None:
    return None
  file, _, arg = path.partition(":")
  get_config = runpy.run_path(file)["get_config"]
  config = get_config(arg) if arg else get_config()
  for a in argv:
    if a.startswith("--config."):
      err = config_lib.unknown_field_error(
          config, a[len("--config."):].split("=", 1)[0])
      if err is not None:
        return err
  return None


def _parse_flags(argv):
  """absl's flag parsing; an unknown `--config.<field>` override (which
  ml_collections reports as a bare AttributeError) becomes a user error
  naming the field and the nearest valid ones."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):
    err = _unknown_override(argv)
    if err is None:
      raise
    _user_error(err)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  logging.set_verbosity(logging.INFO)
  app.run(main, flags_parser=_parse_flags)
