"""The exception classes for mistakes a user can fix (no jax, no deps).

`UserError` marks a bad data file, a bad config value, a refused workdir, a
held lock or a full disk: `main.py` prints its message on one line and exits
with `USER_ERROR_EXIT` (2) instead of a traceback; any other exception is a
bug and keeps its traceback. It subclasses ValueError so that callers that
caught ValueError before (tests, tools) still do. `DataError` is the
`UserError` of data files and data options (`data.DataError` is the same
class); it lives here so that the file parsers and `datasets/` raise it
without importing `data`.
"""

# Exit codes of `python -m diff4rec_jax.main` (README "Exit codes").
USER_ERROR_EXIT = 2      # bad data/config/workdir, lock held, disk full
PREEMPTED_EXIT = 143     # 128 + SIGTERM: stopped on a signal, checkpoint saved


class UserError(ValueError):
  """A problem with the inputs or the environment, named in the message."""


class DataError(UserError):
  """A data file or data option is unusable. The message names file and line."""
