"""Errors of the workstation commands (the device's own live in edgeship.runtime.errors)."""

from edgeship.runtime.errors import EdgeshipError


class DatasetError(EdgeshipError):
    """The image folder or split manifest cannot be used."""


class BackboneError(EdgeshipError):
    """A backbone cannot be built (unknown name, weights not downloadable)."""


class ExportError(EdgeshipError):
    """A conversion failed (caught per format: the report records it, other formats go on)."""


class UntrustedCodeError(EdgeshipError):
    """Loading this model would run code that came with it, and the user did not say they trust it."""


class RunBusyError(EdgeshipError):
    """Another edgeship process is writing the same run directory."""


_DISK_ERRNOS = {"ENOSPC": "no space left on device", "EROFS": "read-only file system", "EDQUOT": "disk quota exceeded",
                "EACCES": "permission denied", "EPERM": "operation not permitted", "EIO": "input/output error"}


def disk_failure(exc: BaseException) -> str | None:
    """'cannot write PATH: no space left on device' when EXC (or what caused it) is a file-system failure,
    else None. TensorFlow and h5py wrap OSError in their own types, so the messages are read too."""
    import errno as errno_module

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            name = errno_module.errorcode.get(exc.errno, "")
            if name in _DISK_ERRNOS:
                where = exc.filename or ""
                return f"cannot write {where}: {_DISK_ERRNOS[name]}" if where else _DISK_ERRNOS[name]
        text = str(exc).lower()
        for reason in ("no space left on device", "read-only file system", "disk quota exceeded"):
            if reason in text:
                return reason
        exc = exc.__cause__ or exc.__context__
    return None
