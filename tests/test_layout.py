"""The package's shape: no import cycles (lazy imports included), small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import car_dream

PACKAGE = Path(car_dream.__file__).parent
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """car_dream modules ``path`` imports, anywhere in it (a function body too)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("car_dream"):
                found.add(target)
                for alias in node.names:  # ``from . import x`` names a module
                    sub = f"{target}.{alias.name}"
                    if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists():
                        found.add(sub)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("car_dream"))
    found.discard(here)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    # A package's __init__ imports its modules for export: not a dependency of theirs.
    return {
        name: {t for t in imports_of(path) if t in modules and not name.startswith(t + ".")}
        for name, path in modules.items()
        if name != "car_dream"
    }


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, set())):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_cycle_check_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "car_dream" / "x.py"
    sample.parent.mkdir()
    sample.write_text("def f():\n    from .y import z\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "car_dream"
    try:
        assert imports_of(sample) == {"car_dream.y"}
    finally:
        PACKAGE = saved


def test_every_module_reads_in_one_sitting() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
