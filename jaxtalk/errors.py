"""The one exception type for mistakes a user can fix (bad paths, bad media, wrong checkpoint).

Command-line entry points catch it and print its message on one line with a non-zero exit status,
so user mistakes never show a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Something the user gave us is wrong; the message says what, and what to do about it."""


def run_reporting_user_errors(fn, *args) -> int:
  """Runs a command-line entry point: 0 on success; a UserError becomes one `error:` line on
  stderr and exit status 2, with no traceback."""
  import sys

  try:
    fn(*args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0
