"""The export-format registry lives in `edgeship.core.formats` (core code reads it too: the files a run owns,
the speed-up table). This module keeps the names it always exported."""

from __future__ import annotations

from edgeship.core.formats import (DEFAULT_FORMATS, FORMATS, ExportFormat, register_format, resolve_formats,
                                   unregister_format)

__all__ = ["DEFAULT_FORMATS", "FORMATS", "ExportFormat", "register_format", "resolve_formats", "unregister_format"]
