"""Command line: `python -m diff4rec_jax.main --config=configs/ml1m.py
--workdir=runs/ml1m [--config.field=value ...]`."""

import logging as std_logging
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

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
  from diff4rec_jax import train  # pylint: disable=g-import-not-at-top
  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except train.Interrupted as e:
    # Preemption (SIGTERM/SIGINT): the checkpoint is saved; exit cleanly.
    logging.warning("%s. Rerun the same command to resume.", e)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  logging.set_verbosity(logging.INFO)
  app.run(main)
