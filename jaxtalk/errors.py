"""The one exception type for mistakes a user can fix (bad paths, bad media, wrong checkpoint).

Command-line entry points catch it and print its message on one line with a non-zero exit status,
so user mistakes never show a traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Something the user gave us is wrong; the message says what, and what to do about it."""
