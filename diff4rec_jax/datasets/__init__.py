"""Dataset preparation: public raw releases -> the pair files `data` reads.

    python -m diff4rec_jax.datasets.prepare --dataset=ml-1m [--data_dir=data]

One concern a module, imports pointing down the list:

  prepare.py    the registry (`SOURCES`), `ensure_dataset`,
                `ensure_for_config` (fetch-if-missing before `data.load`),
                the command line
  synthetic.py  the SYNTHETIC Steam-shaped set (benchmarks only)
  download.py   `Source`, checksums, resumable HTTP download, progress
  raw.py        raw formats and parsers, the k-core filter, `preprocess`
  writers.py    atomic writers: pair files, stats JSON, id maps

`data.py` (reading, splitting, padding a pair file) never imports this
package: the entry points (train, recommend, benchmarks) call
`prepare.ensure_for_config(config.data)` before `data.load(config.data)`.
Nothing is imported here, so `import diff4rec_jax.datasets.raw` loads only
what it needs.
"""
