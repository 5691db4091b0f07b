"""edgeship.cli: the command line (`edgeship COMMAND`), one module per command. Not a library: Python users call
the functions the commands call (edgeship.train.train, edgeship.export.export_run, ...)."""

from .main import build_parser, main, parse_arguments

__all__ = ["main", "build_parser", "parse_arguments"]
