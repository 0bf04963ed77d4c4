"""Assemble the ``detpipe`` CLI and map library errors to exit codes in one place.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace). Heavy imports (torch, ultralytics) happen
inside those functions, so ``detpipe --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from detpipe import __version__
from detpipe.errors import DetpipeError, InvalidInput, ValidationFailed

# Subcommand modules under detpipe.cli, in the order `--help` lists them.
SUBCOMMANDS = (
    "data", "subsets", "train", "evaluate", "report", "logs", "recommend", "mine", "al",
    "export", "bench", "release", "serve", "deploy", "edge", "pipeline",
)  # fmt: skip


# Exit code of an OSError (a file or directory the command cannot read or write: permission,
# read-only or full file system, a path under a regular file ...): bad input, like InvalidInput.
OS_ERROR_EXIT = 2


def os_error_line(e: OSError) -> str:
    """One line for an OSError: ``PATH: reason`` (both paths of a failed rename)."""
    reason = e.strerror or str(e) or type(e).__name__
    if isinstance(e, FileExistsError) and e.filename is not None and not Path(e.filename).is_dir():
        reason = "exists and is not a directory"  # mkdir of a path under a regular file
    if e.filename is None:
        return reason
    if e.filename2 is not None:
        return f"{e.filename} -> {e.filename2}: {reason}"
    return f"{e.filename}: {reason}"


def get_args_parser() -> argparse.ArgumentParser:
    """The full parser (tests parse arguments with it, without a subprocess)."""
    parser = argparse.ArgumentParser(
        prog="detpipe",
        description="YOLO detectors from a COCO-format dataset to an engine on a Jetson: "
        "data tooling, subsets, training, evaluation, export, benchmarking, serving and pipelines.",
        epilog="Run 'detpipe COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"detpipe {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"detpipe.cli.{name}").register(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:  # third-party chatter only when asked for
        for noisy in ("matplotlib", "PIL", "urllib3", "botocore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


STDOUT_CLOSED_EXIT = 128 + signal.SIGPIPE
"""The exit status when the reader of stdout went away (``| head``, ``| grep -q``): the shell's
status of a tool that SIGPIPE ended."""


def _stdout_closed() -> bool:
    """Whether stdout's reader is gone (its pipe polls as an error; a socket's EPIPE is not
    this). If so stdout now goes to /dev/null, so that the interpreter's flush at exit does
    not fail again (the Python docs' SIGPIPE recipe)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        closed = any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError):  # no stdout, or not a file descriptor
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return closed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``detpipe`` console script; returns the exit code."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except ValidationFailed as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"detpipe {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except DetpipeError as e:
        print(f"detpipe {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError as e:
        if not _stdout_closed():
            print(f"detpipe {args.command}: error: {os_error_line(e)}", file=sys.stderr)
            return OS_ERROR_EXIT
        return STDOUT_CLOSED_EXIT  # quietly, as `yes | head -1` ends
    except OSError as e:  # a file the command reads or writes: unwritable --out, full disk, ...
        print(f"detpipe {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return OS_ERROR_EXIT
    except UnicodeDecodeError as e:  # text read without detpipe.io.read_text, which names the file
        print(f"detpipe {args.command}: error: an input file is not UTF-8 text ({e.reason})", file=sys.stderr)
        return InvalidInput.exit_code
    except KeyboardInterrupt:
        print(f"detpipe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
