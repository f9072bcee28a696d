"""Device mesh and shardings: data parallelism over all devices.

A 1-D mesh with axis 'data' spans every device (of every process). Train
state is replicated; batches are sharded on their leading (batch) axis. The
compiled steps are plain `jax.jit` functions: XLA inserts the gradient
all-reduce from these shardings (pmap is in maintenance mode in today's JAX).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def usable_cores() -> int:
  """CPU cores this process may run on (its affinity mask where known)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:   # macOS, Windows
    return os.cpu_count() or 1


def auto_cpu_devices(batch_sizes, cores: int | None = None) -> int:
  """The largest n <= `cores` that divides every size in `batch_sizes`.

  `cores` defaults to `usable_cores()`; always >= 1.
  """
  cores = usable_cores() if cores is None else int(cores)
  sizes = [int(b) for b in batch_sizes]
  for n in range(max(cores, 1), 1, -1):
    if all(b % n == 0 for b in sizes):
      return n
  return 1


def split_cpu(n: int) -> bool:
  """Makes JAX's CPU backend `n` devices, data-parallel over the batch.

  The same mesh and sharded batches as on GPU/TPU (`make_mesh`): the
  devices run their shards of each step at once, which keeps the cores
  busier than one device that splits every small op between them. On the
  2-core CPU, 2 devices train SASRec-BCE faster (results/log/speed.md).
  Leaves everything as it is (returns False) for n <= 1 or when XLA_FLAGS
  already sets a host device count (the user's choice, e.g. the tests').
  Only the CPU backend changes: on a GPU/TPU host the mesh still spans the
  accelerators.

  Must run before JAX initializes a backend (before any JAX computation);
  raises RuntimeError otherwise.
  """
  if n <= 1 or "xla_force_host_platform_device_count" in os.environ.get(
      "XLA_FLAGS", ""):
    return False
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():
    raise RuntimeError(
        "cpu_devices: JAX backends are already initialized; set it before "
        "any JAX computation (or pass cpu_devices=0).")
  jax.config.update("jax_num_cpu_devices", int(n))
  return True


# XLA:CPU hands dots, elementwise ops and reductions to YNNPACK fusions by
# default. A step whose time goes to small products ([tokens x 50] x
# [50 x 50], [W x W] softmaxes and their gradients: SASRec with the BCE
# loss) runs faster in XLA's own kernels; one with a large product (the CE
# loss's [tokens x D] x [D x N] logits, the evaluation's ranking) runs
# faster with them (results/log/speed.md, session 12).
_YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"


def without_ynn(backend: str | None = None) -> dict:
  """`jax.jit(..., compiler_options=...)` turning YNNPACK fusions off.

  On CPU: {_YNN_FLAG: ''} (no fusion type), unless XLA_FLAGS already names
  that flag (the user's choice wins). Elsewhere: {} (nothing to change).
  """
  backend = backend or jax.default_backend()
  if backend != "cpu" or _YNN_FLAG in os.environ.get("XLA_FLAGS", ""):
    return {}
  return {_YNN_FLAG: ""}


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
  """Places every leaf of `tree` on all devices of `mesh`.

  Typed PRNG keys go through their raw key data: with several processes,
  `device_put` refuses a key array for a sharding over other processes'
  devices (it accepts plain arrays, which every process holds the same).
  """
  sharding = replicated(mesh)

  def put(x):
    if (jax.process_count() > 1 and isinstance(x, jax.Array) and
        jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)):
      data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(x, sharding)

  return jax.tree.map(put, tree)


def local_rows(n: int, mesh: Mesh) -> tuple[int, int]:
  """[lo, hi) of a batch of `n` rows that this process's devices hold.

  The mesh orders devices by process, so each process owns one contiguous
  block of the batch axis.
  """
  idx = batch_sharding(mesh).addressable_devices_indices_map((n,))
  spans = [(s[0].start or 0, n if s[0].stop is None else s[0].stop)
           for s in idx.values()]
  return min(a for a, _ in spans), max(b for _, b in spans)


def local_slice(n: int, mesh: Mesh) -> slice:
  """The rows of a global batch of `n` that this process builds and feeds."""
  lo, hi = local_rows(n, mesh)
  return slice(lo, hi)


def local_part(idx: np.ndarray, mesh: Mesh) -> np.ndarray:
  """This process's share of a global batch given by row indices `idx` [n].

  Gather the batch's arrays with the result ([n / P] indices) and hand them
  to `shard_local_batch`: a process never builds other processes' rows.
  """
  return idx[local_slice(len(idx), mesh)]


def is_chief() -> bool:
  """Whether this process writes the run's files (process 0 does)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process gets here (no-op with one process).

  Used after process 0 writes a file that the others read next (the
  generator's top-M file): the workdir must be shared by all hosts, as
  Orbax's multi-host checkpoints already require.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def shard_local_batch(batch, mesh: Mesh):
  """Puts a batch of which this process built only its own rows on the mesh.

  Each leaf is [n / P, ...]: the `local_slice(n, mesh)` rows of a global
  [n, ...] batch (P processes, each with the same number of devices). One
  process: the same as `shard_batch`.
  """
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  p = jax.process_count()
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
          sharding, x, (x.shape[0] * p,) + x.shape[1:]), batch)


def shard_batch(batch, mesh: Mesh):
  """Puts a batch (same global batch on every process) on the mesh.

  Each process hands over only its own rows (`local_slice`) through
  `shard_local_batch`, so no process sends or keeps other processes' rows
  on its devices.
  """
  return shard_local_batch(
      jax.tree.map(lambda x: x[local_slice(x.shape[0], mesh)], batch), mesh)
