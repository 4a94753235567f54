"""The import graph of csfs, csfs.core and csfs.mountpoints: no cycles, and the layers hold.

Every import counts, at module level and inside functions (a lazy import still ties two
modules together). Data flows one way: the command line (csfs) -> core <- mountpoints.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# repository folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {"csfs": "csfs", "core": "csfs.core", "mountpoints": "csfs.mountpoints"}
FUSE_BINDINGS = {"fuse", "fusepy", "mfusepy", "refuse"}


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the three packages (subpackages too)."""
    out: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (imports for annotations only: never run)."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` outside `if TYPE_CHECKING:` blocks (their `else:` is kept)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        children = node.orelse if _type_checking(node) else list(ast.iter_child_nodes(node))
        todo.extend(children)
    return out


def _imports(name: str) -> set[str]:
    """Everything module `name` imports (absolute names; submodules of `from X import Y` included)."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    return _imported(ast.parse(MODULES[name].read_text(), str(MODULES[name])), package)


def _imported(tree: ast.AST, package: str) -> set[str]:
    """The imports run by `tree`, a module of `package`."""
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    """Internal edges only: module -> the modules of the three packages it imports."""
    return {name: {m for m in _imports(name) if m in MODULES and m != name} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cli(name: str) -> bool:
    """A module of the command line: csfs itself, not csfs.core or csfs.mountpoints."""
    return name.startswith("csfs") and not name.startswith(("csfs.core", "csfs.mountpoints"))


def test_the_graph_sees_the_packages():
    """The walk finds what it must (a test that sees nothing would pass anything)."""
    graph = _graph()
    assert {"csfs.main", "csfs.core.project", "csfs.mountpoints.fs"} <= set(graph)
    assert "csfs.core.errors" in graph["csfs.main"]                        # module level
    assert "csfs.core.clearplan" in graph["csfs.core.sizes"]               # inside a function
    assert "csfs.core.documents" in graph["csfs.core.project"]             # relative
    lazy = ast.parse("import os\nif TYPE_CHECKING:\n    from .x import X\n"
                     "def f():\n    from . import y\n    from ..z import w\n")
    assert _imported(lazy, "csfs.core") == {"os", "csfs.core", "csfs.core.y", "csfs.z", "csfs.z.w"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (module-level or inside functions): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_core_imports_neither_the_mount_nor_the_cli_nor_fuse():
    bad = {(name, m) for name in MODULES if name.startswith("csfs.core") for m in _imports(name)
           if m.startswith("csfs.mountpoints") or (_cli(m) and m in MODULES and m != "csfs")
           or m.split(".")[0] in FUSE_BINDINGS}
    assert not bad, sorted(bad)


def test_the_mount_does_not_import_the_cli():
    bad = {(name, m) for name in MODULES if name.startswith("csfs.mountpoints") for m in _imports(name)
           if _cli(m) and m in MODULES and m != "csfs"}
    assert not bad, sorted(bad)
