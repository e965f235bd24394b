"""The package's layout holds: no import circle, no upward import, no long module, no sys.path games, and
docs/architecture.md names every module. Imports are read with `ast`, function-level ones included."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "musicstyle"
MAX_LINES = 400
# what each layer may import from the package, besides itself
ALLOWED = {
    "musicstyle.util": ("musicstyle.errors",),
    "musicstyle.engine": ("musicstyle.errors", "musicstyle.config", "musicstyle.util"),
}
APART = ("musicstyle.paper", "musicstyle.truth")  # neither imports the other
NEEDLE = "sys.path." + "insert"  # spelled apart, so this file does not find itself


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The package modules `name` imports anywhere in its body (a package's __init__ counts as the package)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "musicstyle" and t in MODULES)
    found.discard(name)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_import_circle():
    """Tarjan's strongly connected components over the import graph: every one is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in GRAPH:
        if name not in index:
            visit(name)
    assert not circles, f"import circles: {circles}"


def test_lower_layers_import_nothing_above_them():
    wrong = [f"{name} -> {target}" for layer, allowed in ALLOWED.items() for name in GRAPH if within(name, layer)
             for target in GRAPH[name]
             if target != "musicstyle" and not within(target, layer) and not any(within(target, a) for a in allowed)]
    assert not wrong, "upward imports:\n" + "\n".join(wrong)


def test_paper_and_truth_stay_apart():
    a, b = APART
    wrong = [f"{name} -> {target}" for name in GRAPH for target in GRAPH[name]
             if (within(name, a) and within(target, b)) or (within(name, b) and within(target, a))]
    assert not wrong, "\n".join(wrong)


def test_no_module_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_sys_path_insert():
    found = [str(p.relative_to(REPO)) for p in REPO.rglob("*.py")
             if not any(part.startswith(".") or part in ("venv", "build") for part in p.relative_to(REPO).parts)
             and NEEDLE in p.read_text()]
    assert not found, f"{NEEDLE} in {found}: import the package instead (pip install -e .)"


def test_architecture_page_names_every_module():
    page = (REPO / "docs" / "architecture.md").read_text()
    files = [p.relative_to(PACKAGE).as_posix() for p in MODULES.values()
             if p.name not in ("__init__.py", "__main__.py")]
    missing = [f for f in files if f"`{f}`" not in page]
    assert not missing, f"docs/architecture.md does not name: {missing}"
