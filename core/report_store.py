"""The one writer of report.json (and report.md and its plots beside it). Export creates the report; every later
stage (a bench of the run, the on-target gate) merges its own records into it through `update_report`, under the
run lock and only while the report still describes the run's files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from edgeship.runtime.fileio import atomic_write_json, atomic_write_text

from .layout import RunLayout, run_lock
from .plots import plot_layer_errors
from .records import ParityReport
from .report import LAYERS_PLOT_FILE, PLOT_FILE
from .report_markdown import plot_report, render_markdown

logger = logging.getLogger("edgeship")


def write_report(report: ParityReport, report_json: str | Path) -> Path:
    """Write report.json, the plot and report.md beside it, each atomically. The dict is made here, at the file."""
    report, report_json = ParityReport.of(report), Path(report_json)
    atomic_write_json(report_json, report.to_json())
    plot = plot_report(report, report_json.parent / PLOT_FILE)
    layers_plot = plot_layer_errors([(a.name, a.layers or []) for a in report.artifacts],
                                    report_json.parent / LAYERS_PLOT_FILE)
    md_path = report_json.with_suffix(".md")
    atomic_write_text(md_path, render_markdown(report, plot.name if plot else None,
                                               layers_plot.name if layers_plot else None))
    return md_path


def store_report(layout: RunLayout, report: ParityReport, command: str = "export") -> Path:
    """Export's report of the run, written whole (the stage that measures every artifact); returns report.md."""
    with run_lock(layout.root, command):
        return write_report(report, layout.report_json)


def update_report(layout: RunLayout, command: str, merge: Callable[[ParityReport], None],
                  report: ParityReport | None = None) -> Path | None:
    """A later stage's records merged into the run's report: under the run lock, the report read (or REPORT, read
    by the caller under the same lock) must still describe the run's files; MERGE puts the stage's records in; the
    result is written. None (and a warning) when the report no longer describes the files."""
    from .integrity import report_problems
    from .report import load_report

    with run_lock(layout.root, command):
        if report is None:
            report, _ = load_report(layout.report_json)
        problems = report_problems(report, layout)
        if problems:
            logger.warning(f"{layout.report_json}: not updated by {command}, it no longer describes the files "
                           f"({problems[0]}); re-run `edgeship export`")
            return None
        merge(report)
        return write_report(report, layout.report_json)
