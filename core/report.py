"""report.json (for machines) and report.md + PNG (for people). No TensorFlow needed to read or write."""

from __future__ import annotations

import html
import re

from pathlib import Path

from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import read_json

from .layout import RunLayout
from .records import ParityReport, ParityRow
from .schema import schema_errors

PLOT_FILE = "report_accuracy.png"
LAYERS_PLOT_FILE = "report_layers.png"


def load_report(path: str | Path) -> tuple[ParityReport, Path]:
    """Read report.json from a path to it or to its run directory: (the typed report, its path). Its shape is
    checked against the published schema first (a report is data from elsewhere)."""
    data, path = load_report_json(path)
    return ParityReport.from_json(data), path


def load_report_json(path: str | Path) -> tuple[dict, Path]:
    """The file's dict, schema-checked: for code that must keep what a newer edgeship wrote, byte for byte."""
    path = Path(path)
    if not path.exists() and path.suffix != ".json":
        raise UsageError(f"{path}: no such run directory")  # what export and bench say for the same typo
    if path.is_dir():
        path = RunLayout.find(path).report_json if not (path / "report.json").is_file() else path / "report.json"
    if not path.is_file():
        raise UsageError(f"{path}: no such report; run `edgeship export RUN` to create it")
    report = read_json(path, UsageError, "not a readable JSON report")
    if not isinstance(report, dict) or "artifacts" not in report:
        raise UsageError(f"{path}: not an edgeship report (no 'artifacts' key)")
    if not isinstance(report["artifacts"], list) or not all(isinstance(a, dict) for a in report["artifacts"]):
        raise UsageError(f"{path}: malformed report ('artifacts' must be a list of objects); "
                         f"re-run `edgeship export` to write it again")
    problems = schema_errors("report", report)  # a report is data from elsewhere: its shape is checked first
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UsageError(f"{path}: not a valid edgeship report: {problems[0][:200]}{more}; re-run `edgeship export` "
                         f"to write it again")
    return report, path


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MARKDOWN_ACTIVE = re.compile(r"([\\`|\[\]])")


def terminal_safe(value) -> str:
    """VALUE as text a terminal shows as it is: control characters (ANSI colour, OSC title and hyperlink
    escapes, bidirectional overrides) become '?', line breaks spaces. For every string from outside."""
    return _CONTROL.sub("?", str(value).replace("\r\n", " ").replace("\n", " ").replace("\t", " "))


def md(value) -> str:
    """VALUE as Markdown text: no HTML (< > & escaped), no line break (so no heading or list of its own), no
    table-cell break, link or code span. Class names, errors and a board's answers all come from outside."""
    return _MARKDOWN_ACTIVE.sub(r"\\\1", html.escape(terminal_safe(value), quote=False))


def attribute(value) -> str:
    """VALUE inside a double-quoted HTML attribute."""
    return html.escape(terminal_safe(value), quote=True)


def format_value(value, spec: str, scale: float = 1.0, missing: str = "–") -> str:
    """A number for a table cell; a dash when it is missing. A value that rounds to zero has no minus sign
    (`-0.00` in a Δ column reads as a loss)."""
    if value is None:
        return missing
    text = format(float(value) * scale, spec)
    if text.startswith("-") and not any(ch in "123456789" for ch in text):
        text = ("+" if "+" in spec else "") + text[1:]
    return text


def size_text(num_bytes) -> str:
    if num_bytes is None:
        return "–"
    return f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1 << 20 else f"{num_bytes / (1 << 20):.2f} MiB"


SUMMARY_HEADERS = ("artifact", "format", "precision", "size", "accuracy", "Δ pp", "agreement", "p50 ms")


def summary_rows(report: ParityReport) -> list[list[str]]:
    rows = []
    for a in ParityReport.of(report).artifacts:
        if not a.ok:
            rows.append([a.name, a.format or "?", a.precision or "?", "–", "FAILED", "–", "–", "–"])
            continue
        rows.append([a.name, a.format, a.precision, size_text(a.size_bytes), format_value(a.accuracy, ".2%"),
                     format_value(a.accuracy_delta_pp, "+.2f"), format_value(a.agreement, ".2%"),
                     format_value(row_p50(a), ".3f")])
    return rows


def row_p50(row: ParityRow):
    return (row.latency_ms or {}).get("p50")


def row_threads(row: ParityRow):
    return (row.latency_settings.threads if row.latency_settings else None) or "default"


def markdown_table(headers, rows) -> str:
    """Every cell is text (md): a class name or a board's answer cannot open HTML or a new table cell."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers, rows) -> str:
    rows = [[terminal_safe(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line("-" * w for w in widths), *(line(r) for r in rows)])
