"""edgeship.export: format registry, converters, parity report and gate.

Importing this package does not import TensorFlow; converters load it when they run.
"""

from edgeship.core.report import load_report
from edgeship.core.report_store import write_report

from .formats import DEFAULT_FORMATS, FORMATS, ExportFormat, resolve_formats
from .gate import GateThresholds, GateVerdict, evaluate_gate

__all__ = ["FORMATS", "DEFAULT_FORMATS", "ExportFormat", "resolve_formats", "GateThresholds", "GateVerdict",
           "evaluate_gate", "load_report", "write_report", "export_run"]


def export_run(*args, **kwargs):
    """See edgeship.export.exporter.export_run (imported lazily: it needs TensorFlow)."""
    from .exporter import export_run as _export_run

    return _export_run(*args, **kwargs)
