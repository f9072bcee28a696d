"""Old name of `python -m diff4rec_jax.datasets.prepare`, kept as a shim.

`python -m diff4rec_jax.prepare --dataset=...` still works: it runs
`diff4rec_jax/datasets/prepare.py` as the main module (same flags, help
and exit codes), where the code lives. Nothing else is here; import
`diff4rec_jax.datasets.prepare` instead.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("diff4rec_jax.datasets.prepare", run_name="__main__",
                   alter_sys=True)
