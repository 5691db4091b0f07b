"""Typed errors. The CLI turns each into one line and an exit code; Python users can catch them."""


class EdgeshipError(Exception):
    """Base of every error edgeship raises on purpose. exit_code is what the CLI returns."""

    exit_code = 2


class UsageError(EdgeshipError):
    """A command was called with arguments that cannot work (missing file, bad threshold)."""


class ImageError(EdgeshipError):
    """One image cannot be decoded."""


class ModelLoadError(EdgeshipError):
    """A model file or bundle cannot be loaded."""


class IntegrityError(EdgeshipError):
    """A file no longer matches the record (sha256) that the bundle or the report holds for it."""

