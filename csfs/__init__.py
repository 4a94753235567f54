"""csfs: keep CryoSPARC project directories safe, movable and shareable.

`csfs.core` does the work on disk, `csfs.mountpoints` is the FUSE view over it, and this
package's own modules are the command line (no domain logic).
"""
from importlib import metadata as _metadata
from pathlib import Path as _Path

try:
    __version__ = _metadata.version("csfs")
except _metadata.PackageNotFoundError:   # a source checkout that was never installed
    __version__ = "0+unknown"

# In the repository, csfs.core and csfs.mountpoints are the top-level folders core/ and
# mountpoints/ (setuptools' package-dir maps them at install). Let a checkout on
# PYTHONPATH (a git worktree, a CI clone) import its own copies.
_checkout = _Path(__file__).resolve().parent.parent
if all((_checkout / name / "__init__.py").is_file() for name in ("core", "mountpoints")):
    __path__.append(str(_checkout))
