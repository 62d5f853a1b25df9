"""The errors afos raises for bad input or unusable files: one family, caught once by the command line.

Every error a user can cause (a bad option, a config key, an expression, a run directory, a dataset that is
not there, a Ray cluster that does not answer) is an ``AfosError`` whose message is one line naming the
problem. The command line prints those (and ``OSError``, a file the system refused) as one line with exit
status 2; anything else is a bug in afos and keeps its traceback. Errors about a value also derive from
``ValueError``, so that code which catches ``ValueError`` around an afos call keeps working.

What afos works around rather than refuses (a log line a kill cut short, a damaged checkpoint with a good
one before it) is an ``AfosWarning`` given to ``warnings.warn``: a notebook sees an ordinary Python warning,
and the command line prints it as one line (``afos COMMAND: warning: ...``).
"""

from __future__ import annotations

import shlex
from pathlib import Path


class AfosError(Exception):
    """Base of every error afos raises for input it cannot use; the message is one line."""


class ConfigError(AfosError, ValueError):
    """A configuration file, section, key or value that is not valid; the message names it."""


class SpaceError(ConfigError):
    """A search space file that is not valid; the message names the file and the key."""


class ExpressionError(AfosError, ValueError):
    """Text that is not an expression of the safe grammar, or an expression afos cannot use."""


class RunError(AfosError):
    """A run directory that cannot be used as asked (missing, damaged, locked, or of another config)."""


class DataError(AfosError, ValueError):
    """A dataset that cannot be found, read or prepared; the message says what to do."""


class ModelError(AfosError, ValueError):
    """An unknown model, or an option a model does not take."""


class BenchError(AfosError, ValueError):
    """A benchmark specification, preset or directory that cannot be used."""


class ExportError(AfosError, ValueError):
    """An expression, run or format that afos cannot export."""


class DistributedError(AfosError, RuntimeError):
    """Ray is missing, a cluster cannot be reached or lacks the resources, or workers keep dying."""


class ObjectiveExitError(AfosError):
    """A user's objective called ``sys.exit``: afos stops (what it finished is saved) and, on the command line,
    exits with the status the objective asked for (``status``)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status

    @classmethod
    def of(cls, name: str, exit_: SystemExit) -> ObjectiveExitError:
        """What ``sys.exit(code)`` in objective ``name`` says, with Python's exit status for ``code``."""
        code = exit_.code
        called = "sys.exit()" if code is None else f"sys.exit({code!r})"
        status = 0 if code is None else code if isinstance(code, int) else 1
        return cls(f"the objective {name!r} called {called}", status)

    def stopped(self, what: str) -> ObjectiveExitError:
        """This error with ``what`` stopped and what is saved said after it."""
        return ObjectiveExitError(f"{self}: {what}", self.status)


class AfosWarning(UserWarning):
    """Something afos worked around and went on (a truncated log line, a damaged checkpoint); one line."""


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (its type's name where it has none): what a one-line error quotes
    of a failure in code afos does not own (a user's module, Ray)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def read_text(path: str | Path, error: type[AfosError]) -> str:
    """The text of the file ``path``; a file that is not UTF-8 text is an ``error`` that names it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})") from None


def command(*words: str | Path) -> str:
    """An afos command line that a message suggests, each word quoted for the shell where it needs it: a run
    directory named ``$HOME; rm -rf ~`` is shown as ``'$HOME; rm -rf ~'``, which a copy and paste keeps a path."""
    return shlex.join(["afos", *map(str, words)])
