"""The ``afos`` command line: parses arguments, calls the library, prints its errors as one line.

An error the user can cause is an ``afos.errors.AfosError`` (or an ``OSError`` the system raised about a
file): it is printed as ``afos COMMAND: error: ...`` with exit status 2. Anything else is a bug and keeps its
traceback. Ctrl-C stops with exit status 130 after saving what is finished, and says how to resume, or that
there is nothing to resume where a search's run directory does not exist yet. A user's objective that calls
``sys.exit(N)`` stops afos the same way, with one line saying so and exit status N.

A warning is printed as one line too, ``afos COMMAND: warning: ...``: afos's own (``AfosWarning``) as its
message, any other (a library's) with its category and the package it came from, never a file, line
number or source line.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from afos.errors import AfosError, AfosWarning, ObjectiveExitError, first_line

SHORT_OPTIONS = ("-h", "-o")


def _shield_leading_minus(argv: list[str]) -> list[str]:
    """Lets expressions start with a minus (``--expr "-x*erf(exp(-x))"``) without ``--expr=``.

    argparse takes any token that starts with '-' for an option; afos's only short options are -h and
    -o, so every other single-dash token is a value: a leading space hides its dash from argparse (the
    expression parser and int() ignore it).
    """
    return [f" {a}" if a.startswith("-") and not a.startswith("--") and a not in SHORT_OPTIONS else a
            for a in argv]


def main(argv: list[str] | None = None) -> int:
    """Runs one afos command and returns its exit status (130 when stopped by Ctrl-C).

    A command stopped by Ctrl-C leaves SIGINT ignored: the process is on its way out, and a further
    Ctrl-C while it reports and exits must not turn a clean stop into a traceback.
    """
    from afos.run.lock import ignore_sigint

    try:
        return _command(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # a further Ctrl-C that landed while the first stop was being reported
        ignore_sigint()
        return 130


def _parse(argv: list[str]):
    from afos.cli.parser import RESUME_OPTIONS, build_parser, search_option_names

    parser = build_parser()
    args, extra = parser.parse_known_args(_shield_leading_minus(argv))
    if extra:
        fixed = [a.split("=")[0] for a in extra if a.split("=")[0] in search_option_names()]
        if args.command == "resume" and fixed:
            parser.exit(2, f"afos resume: error: {fixed[0]} was fixed when the run started; a resume takes only "
                           f"{', '.join(RESUME_OPTIONS)} (start a new search to change the rest)\n")
        parser.parse_args(_shield_leading_minus(argv))  # argparse's own error about what it does not know
    return args


def warning_line(command: str, message: Warning | str, category: type[Warning], filename: str) -> str:
    """The one line the command line prints for a warning: an ``AfosWarning`` as its message; any other
    with its category and, for a library's, the package it came from (``afos search: warning:
    UserWarning (jax): ...``)."""
    text = first_line(message) if isinstance(message, Warning) else (str(message).strip().splitlines() or [""])[0]
    if issubclass(category, AfosWarning):
        return f"afos {command}: warning: {text}"
    parts = Path(filename).parts
    where = [parts[i + 1] for i, part in enumerate(parts[:-1]) if part in ("site-packages", "dist-packages")]
    origin = f" ({Path(where[-1]).stem})" if where else ""
    return f"afos {command}: warning: {category.__name__}{origin}: {text}"


def _one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints ``warning_line`` to the standard error at the time of the
    warning (a live progress display has redirected it there)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        del lineno, file, line  # a user of the command line is not shown afos's or a library's source
        print(warning_line(command, message, category, filename), file=sys.stderr)
    return show


def _command(argv: list[str]) -> int:
    args = _parse(argv)
    with warnings.catch_warnings():  # the hook is the command's: main() called from Python restores it
        warnings.showwarning = _one_line_warnings(args.command)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from afos.run.lock import ignore_sigint, noting_sigint

    try:
        with noting_sigint():
            return args.func(args)
    except ObjectiveExitError as err:  # the user's objective asked for its exit status: it keeps it
        print(f"afos {args.command}: error: {err}", file=sys.stderr)
        return err.status
    except (AfosError, OSError) as err:
        print(f"afos {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # what a search leaves it says (driver, run.lock, commands._resumable)
        ignore_sigint()
        print(f"afos {args.command}: {str(err) or _stopped(args.command)}", file=sys.stderr)
        return 130


def _stopped(command: str) -> str:
    """What a Ctrl-C says where nothing said more: a search whose run directory holds no run yet (else
    ``commands._resumable`` gives the resume command) started nothing, so there is nothing to resume."""
    if command == "search":
        return "stopped by Ctrl-C before the search started, so there is nothing to resume"
    return "stopped by Ctrl-C"


if __name__ == "__main__":
    sys.exit(main())
