"""The one exception type for mistakes a user can fix (bad paths, bad media, wrong checkpoint).

Command-line entry points report it through `jaxtalk.cli`: its message on one line, exit status 2,
no traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Something the user gave us is wrong; the message says what, and what to do about it."""
