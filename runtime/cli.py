"""Conventions shared by every ``deblur-*`` command.

``--help`` that explains, ``--version``, ``--log-level`` and ``--debug``; a ``DeblurError`` becomes
one line on stderr and its exit code (2 for bad input), never a traceback unless ``--debug``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from deblur.runtime.errors import DeblurError

log = logging.getLogger("deblur")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deblur-edge")
    except PackageNotFoundError:
        return "0+unknown"


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """A parser with the common flags; ``epilog`` holds examples users can copy."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="how much to log (default: INFO)",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (tests and embedding apps replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ARG002 - StreamHandler.__init__ assigns it
        pass


def setup_logging(level: str) -> None:
    """Log lines go to stderr through the ``deblur`` logger; results go to stdout."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if level == "DEBUG" else "%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    main: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, set up logging, run ``main``; map errors to one line and an exit code."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(main(args) or 0)
    except DeblurError as e:
        if args.debug:
            raise
        print(f"{prog}: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place unexpected errors are turned into a line
        if args.debug:
            raise
        print(
            f"{prog}: internal error: {type(e).__name__}: {e} (run again with --debug for the traceback "
            "and report it)",
            file=sys.stderr,
        )
        return 1
