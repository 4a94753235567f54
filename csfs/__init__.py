"""csfs: keep CryoSPARC project directories safe, movable and shareable.

`csfs.core` does the work on disk, `csfs.mountpoints` is the FUSE view over it, and this
package's own modules are the command line (no domain logic) and the Python API
(`csfs.api`, whose names are also `csfs.<name>`: csfs.open_instance, csfs.open_project,
csfs.Project, csfs.CsfsError, ...).
"""
from pathlib import Path as _Path

__version__: str    # set on first use (__getattr__)

# In the repository, csfs.core and csfs.mountpoints are the top-level folders core/ and
# mountpoints/ (setuptools' package-dir maps them at install). Let a checkout on
# PYTHONPATH (a git worktree, a CI clone) import its own copies.
_checkout = _Path(__file__).resolve().parent.parent
if all((_checkout / name / "__init__.py").is_file() for name in ("core", "mountpoints")):
    __path__.append(str(_checkout))


def __getattr__(name: str) -> object:
    """csfs.open_project etc.: the API (csfs.api), imported on first use so the CLI starts fast;
    and __version__, read from the installed metadata on first use (importlib.metadata costs
    ~20 ms of every start)."""
    import importlib

    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("csfs")
        except metadata.PackageNotFoundError:   # a source checkout that was never installed
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    if not name.startswith("_") and name != "api":
        api = importlib.import_module("csfs.api")
        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'csfs' has no attribute {name!r}")


def __dir__() -> list[str]:
    import importlib

    return sorted(set(globals()) | set(importlib.import_module("csfs.api").__all__))
