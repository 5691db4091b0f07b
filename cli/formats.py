"""`edgeship formats`: the export-format registry as a table, with what runs each format on this machine."""

from __future__ import annotations

NAME = "formats"
HELP = "list export formats"


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    from edgeship.export.formats import FORMATS
    from edgeship.core.report import text_table
    rows = [[f.name, f.filename, f.precision, "yes" if f.needs_calibration else "no", f.backend,
             f.runs_here() or "not installed", "yes" if f.default else "when named", f.description]
            for f in FORMATS.values()]
    print(text_table(("format", "file", "precision", "calibration", "backend", "runs here with", "by default",
                      "description"), rows))
    return 0
