"""Safe reading of documents and metafiles: the one place csfs opens what it parses.

Project directories and exports may hold anything: a FIFO where `job.json` should
be (opening it would block for ever), `/dev/zero` as `cs.lock` (reading it would
never end), a gigabyte "document", 50,000 levels of nesting (RecursionError), or
`Infinity` where a count belongs. Every reader of job.json, project.json,
workspaces.json, cs.lock, `.csg` and `.cs` files goes through here:

* `open_regular` opens with O_NONBLOCK and refuses anything but a regular file
  (checked with fstat on the open descriptor, so a swap after a check cannot fool it);
* `read_bytes` adds a size limit;
* `load_json` / `parse_json` refuse NaN, Infinity and numbers that overflow a float,
  and nesting deeper than MAX_DEPTH;
* `load_yaml` / `parse_yaml` use YAML's safe loader, refuse alias bombs (the tree an
  alias-expanded document would have is bounded) and deep nesting, and turn bad
  dates (`2024-99-99`) into a clean error.

Each failure is one CsfsError naming the file: NotFoundError when it is missing,
UsageError when it cannot be read, FormatError when it is not what it should be.
"""
from __future__ import annotations

import json
import math
import os
import stat
from typing import IO, Any

import yaml

from .errors import FormatError, NotFoundError, UsageError

DOC_LIMIT = 64 << 20       # job.json / project.json / workspaces.json
LOCK_LIMIT = 64 << 10      # cs.lock
CSG_LIMIT = 4 << 20        # a .csg is a few hundred bytes to a few KiB
MAX_DEPTH = 200            # real documents nest about 10 levels
MAX_YAML_NODES = 200_000   # nodes of a YAML document with every alias expanded

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """'a FIFO', 'a directory', ... for a non-regular file mode."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"{path}: is {kind_of(st.st_mode)}, not a regular file; refusing to read it")


def open_regular(path: str | os.PathLike) -> int:
    """An O_RDONLY descriptor of `path` (symlinks followed), only if it is a regular file.

    A FIFO, device, socket or directory is refused without blocking: the file type is
    checked before opening (so a device is never opened) and again with fstat.
    """
    try:
        check_regular(path, os.stat(path))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:   # ValueError: a path holding a NUL
        raise UsageError(f"{path!r}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        check_regular(path, os.fstat(fd))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: str | os.PathLike) -> IO[bytes]:
    """`open(path, "rb")` for a regular file only (see `open_regular`)."""
    return os.fdopen(open_regular(path), "rb")


def read_bytes(path: str | os.PathLike, limit: int = DOC_LIMIT) -> bytes:
    """The whole content of a regular file of at most `limit` bytes."""
    with open_file(path) as f:
        if os.fstat(f.fileno()).st_size > limit:
            raise FormatError(f"{path}: too large for a document ({os.fstat(f.fileno()).st_size} bytes; "
                              f"the limit is {limit})")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise FormatError(f"{path}: too large for a document (more than {limit} bytes)")
    return data


# ---------------------------------------------------------------- JSON

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid number here")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(raw: bytes | str, name: str | os.PathLike = "document", max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; anything malformed, non-finite or too deep is one FormatError."""
    try:
        doc = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise FormatError(f"{name}: not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError, TypeError) as e:
        raise FormatError(f"{name}: not valid JSON ({_short(e)})") from None
    _check_depth(doc, name, max_depth, "JSON")
    return doc


def load_json(path: str | os.PathLike, limit: int = DOC_LIMIT, max_depth: int = MAX_DEPTH) -> Any:
    """Read and parse a JSON document (a regular file of at most `limit` bytes)."""
    return parse_json(read_bytes(path, limit), path, max_depth)


def _check_depth(doc: Any, name: str | os.PathLike, max_depth: int, what: str) -> None:
    stack = [(doc, 1)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, dict):
            children: Any = obj.values()
        elif isinstance(obj, (list, tuple)):
            children = obj
        else:
            continue
        if depth > max_depth:
            raise FormatError(f"{name}: not valid {what} (nested more than {max_depth} levels)")
        stack.extend((c, depth + 1) for c in children)


# ---------------------------------------------------------------- YAML

class _Loader(yaml.SafeLoader):
    """YAML's safe loader (no Python objects)."""


def _check_yaml_tree(node: yaml.Node, name: str | os.PathLike, max_nodes: int, max_depth: int) -> None:
    """Refuse a composed document whose alias-expanded tree is too big or too deep.

    An alias bomb is a few hundred bytes whose expansion has billions of nodes; the
    expanded size is counted once per distinct node (memoised), so this is linear.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        n, done = stack.pop()
        key = id(n)
        kids = _yaml_children(n)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > max_nodes:
                raise FormatError(f"{name}: YAML document too large when its aliases are expanded "
                                  f"(more than {max_nodes} nodes); refusing it")
            if depth[key] > max_depth:
                raise FormatError(f"{name}: not valid YAML (nested more than {max_depth} levels)")
            continue
        if key in size:
            continue
        if key in on_path:
            raise FormatError(f"{name}: YAML document refers to itself (recursive alias)")
        on_path.add(key)
        stack.append((n, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def _yaml_children(n: yaml.Node) -> list[yaml.Node]:
    if isinstance(n, yaml.SequenceNode):
        return list(n.value)
    if isinstance(n, yaml.MappingNode):
        return [x for pair in n.value for x in pair]
    return []


def parse_yaml(raw: bytes | str, name: str | os.PathLike = "document",
               max_nodes: int = MAX_YAML_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document safely; anything malformed or hostile is one FormatError."""
    loader = None
    try:
        loader = _Loader(raw)      # reads the first bytes already: encoding errors come from here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_tree(node, name, max_nodes, max_depth)
        return loader.construct_document(node)
    except RecursionError:
        raise FormatError(f"{name}: not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise FormatError(f"{name}: not valid YAML{at}") from None
    except (ValueError, OverflowError, TypeError, UnicodeDecodeError) as e:
        # e.g. `created: 2024-99-99` (a timestamp YAML cannot build) or a huge integer
        raise FormatError(f"{name}: not valid YAML ({_short(e)})") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | os.PathLike, limit: int = CSG_LIMIT) -> Any:
    """Read and parse a YAML document (a regular file of at most `limit` bytes)."""
    return parse_yaml(read_bytes(path, limit), path)


def _short(e: BaseException, n: int = 120) -> str:
    text = str(e).replace("\n", " ")
    return text if len(text) <= n else text[:n] + "..."


__all__ = ["DOC_LIMIT", "LOCK_LIMIT", "CSG_LIMIT", "MAX_DEPTH", "open_regular", "open_file",
           "read_bytes", "parse_json", "load_json", "parse_yaml", "load_yaml", "check_regular", "kind_of"]
