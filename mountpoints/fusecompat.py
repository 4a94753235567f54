"""The FUSE binding: mfusepy (libfuse3) when available, else fusepy (libfuse2), same API.

Importing never fails: `AVAILABLE` says whether a binding and libfuse were found and
`PROBLEM` says why not, so the CLI can print one clear line.
"""
from __future__ import annotations

import errno

AVAILABLE = False
PROBLEM = ""
LIBRARY = ""
FUSE_MAJOR = 0
FUSE_MINOR = 0

try:  # mfusepy raises OSError/EnvironmentError when libfuse itself is missing
    import mfusepy as _fuse  # type: ignore

    LIBRARY = "mfusepy"
    FUSE_MAJOR = int(getattr(_fuse, "fuse_version_major", 3))
    FUSE_MINOR = int(getattr(_fuse, "fuse_version_minor", 0))
    AVAILABLE = True
except (ImportError, OSError) as e:  # pragma: no cover - depends on the machine
    PROBLEM = f"mfusepy: {e}"
    try:
        import fuse as _fuse  # type: ignore  # fusepy

        LIBRARY = "fusepy"
        FUSE_MAJOR, FUSE_MINOR = 2, 9
        AVAILABLE = True
    except (ImportError, OSError) as e2:
        PROBLEM += f"; fusepy: {e2}"
        _fuse = None

if _fuse is not None:
    FUSE = _fuse.FUSE
    Operations = _fuse.Operations
    FuseOSError = _fuse.FuseOSError
    fuse_get_context = _fuse.fuse_get_context
else:  # pragma: no cover
    class FuseOSError(OSError):  # type: ignore[no-redef]
        def __init__(self, code: int) -> None:
            super().__init__(code, errno.errorcode.get(code, str(code)))

    class Operations:  # type: ignore[no-redef]
        pass

    FUSE = None  # type: ignore[assignment]

    def fuse_get_context() -> tuple[int, int, int]:  # type: ignore[misc]
        return (0, 0, 0)
