"""Typed errors. The CLI turns each into one line and an exit code; Python users can catch them."""


class EdgeshipError(Exception):
    """Base of every error edgeship raises on purpose. exit_code is what the CLI returns."""

    exit_code = 2


class UsageError(EdgeshipError):
    """A command was called with arguments that cannot work (missing file, bad threshold)."""


class DatasetError(EdgeshipError):
    """The image folder or split manifest cannot be used."""


class ImageError(EdgeshipError):
    """One image cannot be decoded."""


class ModelLoadError(EdgeshipError):
    """A model file or bundle cannot be loaded."""


class BackboneError(EdgeshipError):
    """A backbone cannot be built (unknown name, weights not downloadable)."""


class ExportError(EdgeshipError):
    """A conversion failed."""

    exit_code = 1


class GateFailed(EdgeshipError):
    """At least one artifact did not meet the gate's thresholds."""

    exit_code = 1
