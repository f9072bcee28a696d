"""Old name of `python -m diff4rec_jax.datasets.synthetic`, kept as a shim.

`python -m diff4rec_jax.synthetic --data_dir=...` still works: it runs
`diff4rec_jax/datasets/synthetic.py` as the main module (same flags, help
and output), where the code lives. Nothing else is here; import
`diff4rec_jax.datasets.synthetic` instead.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("diff4rec_jax.datasets.synthetic", run_name="__main__",
                   alter_sys=True)
