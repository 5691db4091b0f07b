"""The command line: one module per command (cli/train.py, cli/gate.py, ...), each holding its arguments and its
handler side by side; this module builds the parser from them and turns errors into one line and an exit code.

A command module has NAME, HELP, `add_arguments(parser)` and `run(args) -> int` (and INTERRUPTED: what Ctrl-C
leaves). Imports inside `run` are lazy, so `edgeship predict` on a Raspberry Pi never imports TensorFlow."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from edgeship.runtime.errors import EdgeshipError

from .arguments import OneLineParser

COMMANDS = ("train", "explain", "explore", "sweep", "outlier", "qat", "export", "gate", "bench", "predict", "demo",
            "formats", "backbones")


def command_module(name: str):
    return importlib.import_module(f"edgeship.cli.{name}")


def _version() -> str:
    import importlib.metadata

    try:
        return f"edgeship {importlib.metadata.version('edgeship')}"
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "edgeship (not installed)"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ONLY, the other commands' arguments are left out (they are not parsed)."""
    parser = OneLineParser(prog="edgeship", description="Ship image classifiers to edge devices.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = command_module(name)
        p = sub.add_parser(module.NAME, help=module.HELP)
        if only in (None, name):
            module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def parse_arguments(argv=None) -> argparse.Namespace:
    """Options may come anywhere, as `xargs` and habit put them: `predict MODEL --json a.png b.png`,
    `bench M1 --runs 5 M2`. argparse's intermixed parsing does not support sub-commands, so the command is
    found first and its own parser (whose usage line an error then shows) parses the rest intermixed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        return build_parser().parse_args(argv)  # -h, no command, a typo: argparse's own message and usage
    parser = build_parser(only=argv[0])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    args = commands[argv[0]].parse_intermixed_args(_attach_dash_values(argv[1:]))
    args.command = argv[0]
    return args


DASH_VALUED = ("--input-range", "--mean")  # their values may start with '-': `--input-range -1,1`


def _attach_dash_values(argv: list[str]) -> list[str]:
    """`--input-range -1,1` as `--input-range=-1,1`: argparse would take '-1,1' for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in DASH_VALUED and i + 1 < len(argv) and re.match(r"-[\d.]", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


class _TerminalText:
    """sys.stdout/stderr with control characters from outside strings made visible ('?'): a class name, a
    model's metadata or a board's reply cannot colour, retitle or rewrite the user's terminal (ANSI CSI, OSC,
    bidirectional overrides). Line breaks, tabs and the progress bar's carriage return pass."""

    _UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(self._UNSAFE.sub("?", text) if isinstance(text, str) else text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalText(sys.stdout), _TerminalText(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _main(argv=None) -> int:
    args = parse_arguments(argv)
    _log_to_stderr()
    try:
        return args.func(args)
    except EdgeshipError as exc:
        print(f"edgeship: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        said = getattr(command_module(args.command), "INTERRUPTED", "")
        print(f"edgeship: interrupted{said}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_is_closed():
            raise
        # `edgeship formats | head -3`: the reader stopped reading. No traceback; exit as a Unix tool killed by
        # SIGPIPE does (141), never 0: a gate whose verdict was cut off must not read as passed under pipefail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a full or read-only disk is the user's to fix: one line, not a traceback
        return _disk_failure(exc)


def _disk_failure(exc: Exception) -> int:
    from edgeship.core.errors import disk_failure

    reason = disk_failure(exc)
    if reason is None:
        raise exc
    where = getattr(exc, "filename", None)
    print(f"edgeship: error: {reason}" + (f" ({where})" if where and str(where) not in reason else "")
          + "; free space or choose a writable --out (earlier results were left as they were)", file=sys.stderr)
    return 2


def _stdout_is_closed() -> bool:
    """Was the broken pipe our stdout (rather than a child process's)? Its reader gone, a flush fails again, or
    the pipe polls POLLERR."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


class _LowercaseLevel:
    """`edgeship: warning: ...`, matching `edgeship: error: ...`."""

    def __init__(self, fmt: str):
        import logging

        self._formatter = logging.Formatter(fmt)

    def format(self, record) -> str:
        import copy

        record = copy.copy(record)
        record.levelname = record.levelname.lower()
        return self._formatter.format(record)


def _log_to_stderr() -> None:
    """The library logs to 'edgeship'; the CLI shows its warnings as `edgeship: warning: ...` lines."""
    import logging

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever sys.stderr is when it logs (main() filters it for the call's duration)."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    logger = logging.getLogger("edgeship")
    if not logger.handlers:
        handler = CurrentStderr()
        handler.setFormatter(_LowercaseLevel("edgeship: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
