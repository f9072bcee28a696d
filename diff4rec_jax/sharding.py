"""Device mesh and shardings: data parallelism over all devices.

A 1-D mesh with axis 'data' spans every device (of every process). Train
state is replicated; batches are sharded on their leading (batch) axis. The
compiled steps are plain `jax.jit` functions: XLA inserts the gradient
all-reduce from these shardings (pmap is in maintenance mode in today's JAX).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch(batch_size: int, mesh: Mesh, field: str) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"{field}={batch_size} is not divisible by the number of "
                     f"devices ({n}); choose a multiple of {n}.")


def round_up(n: int, mesh: Mesh) -> int:
  """`n` rounded up to a multiple of the mesh's device count.

  For internal batch sizes that do not change a result (inference,
  augmentation, scoring); user-facing ones are checked by `check_batch`.
  """
  d = mesh.devices.size
  return -(-int(n) // d) * d


def to_host(x) -> np.ndarray:
  """A (possibly sharded, multi-process) jax array as a full numpy array."""
  if jax.process_count() == 1 or x.is_fully_replicated:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` on all devices of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
  """Puts host arrays (global batch, same on every process) on the mesh.

  In a multi-process run each process passes the global batch and keeps its
  addressable shards (`make_array_from_callback`), so no process needs the
  others' data in memory beyond the indices.
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(x.shape, sharding,
                                             lambda idx: x[idx]), batch)
