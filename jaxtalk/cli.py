"""The one way every command line reports a user's mistake: one line on stderr, exit status 2.

Mistakes a user can fix (a bad path, bad media, a wrong checkpoint, an option out of range) are
`UserError`s; argument-parsing mistakes are the same to a user. Both become `error: <message>` and
exit status 2, with no traceback and no usage dump. Anything else is a bug and keeps its traceback.
Ctrl-C exits quietly with 130, after whatever the command saves on the way out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from jaxtalk.errors import UserError

USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130


def report_user_error(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return USER_ERROR_STATUS


class _OneLineErrors(argparse.ArgumentParser):
  def error(self, message: str):
    sys.exit(report_user_error(f"{message} (see {self.prog} --help)"))


def argument_parser(prog: str, doc: str) -> argparse.ArgumentParser:
  """A parser for a command whose module docstring is `doc` (its first line is the description)."""
  return _OneLineErrors(
    prog=prog,
    description=doc.strip().splitlines()[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )


def print_report(text: str, results: dict, json_path: str | None) -> None:
  """Prints a command's table; with `json_path`, also writes every number there (atomically)."""
  from jaxtalk.media import write_json

  print(text)
  if json_path:
    write_json(json_path, results)
    print(f"wrote {json_path}")


def run_command(command: Callable[[Any], Any], args: Any) -> int:
  """Runs `command(args)`; returns the exit status (0, or see the module docstring)."""
  try:
    command(args)
  except UserError as e:
    return report_user_error(str(e))
  except KeyboardInterrupt:
    return INTERRUPTED_STATUS
  return 0
