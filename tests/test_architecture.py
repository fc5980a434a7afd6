"""The package's folders are its data flow; imports may only point upstream (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logscan"

# Upstream first. A module may import its own layer and any layer before it, never one after.
LAYERS = ("", "sources", "parsers", "core", "outputs", "app")
MAX_CLASS_LINES = 300


def _layer_of_module(dotted: str) -> int | None:
    """Layer of a `logscan...` module name; None for modules outside the package."""
    parts = dotted.split(".")
    if parts[0] != "logscan":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return 0  # logscan, logscan.events, logscan.__main__: the shared vocabulary


def _layer_of_file(path: Path) -> int:
    rel = path.relative_to(PACKAGE).parts
    return LAYERS.index(rel[0]) if len(rel) > 1 and rel[0] in LAYERS else 0


def _module_of_file(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module named by an import anywhere in the file (lazy ones too), with its line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{a.name}") for a in node.names)
    return out


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_lives_in_a_layer() -> None:
    shared = {"__init__.py", "__main__.py", "events.py"}
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in shared]
    assert loose == [], "top-level modules besides the shared vocabulary; give them a layer folder"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_upstream_only(path: Path) -> None:
    own = _layer_of_file(path)
    if path.name == "__main__.py" and own == 0:
        own = LAYERS.index("app")  # `python -m logscan` is the CLI
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for line, name in _imports(tree, _module_of_file(path), path.name == "__init__.py"):
        layer = _layer_of_module(name)
        if layer is not None and layer > own:
            bad.append(f"line {line}: {name} ({LAYERS[layer]}) imported from {LAYERS[own] or 'top level'}")
    assert bad == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_crosses_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    crossing = [
        f"line {node.lineno}: {node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("logscan")
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]
    assert crossing == []


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for path in _sources():
        mod = _module_of_file(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[mod] = {n for _, n in _imports(tree, mod, path.name == "__init__.py")}
    modules = set(graph)
    edges = {m: {n for n in targets if n in modules and n != m} for m, targets in graph.items()}
    # Packages' __init__ re-exports are not cycles of meaning; only module-to-module ones count.
    edges = {m: {n for n in t if not m.startswith(n + ".")} for m, t in edges.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        seen[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if seen.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in seen:
                found = visit(n)
                if found:
                    return found
        seen[m] = 2
        stack.pop()
        return None

    for m in sorted(modules):
        if m not in seen:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)


def test_big_classes_say_why_at_their_top() -> None:
    unexplained = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if size > MAX_CLASS_LINES and "Why one class" not in doc:
                    unexplained.append(f"{path.relative_to(PACKAGE)}: {node.name} ({size} lines)")
    assert unexplained == [], "split these, or say 'Why one class: ...' in their docstring"


def test_the_layer_test_catches_a_downstream_import(tmp_path: Path) -> None:
    tree = ast.parse("from logscan.app.config import load_config\n")
    names = [n for _, n in _imports(tree, "logscan.parsers.postfix", False)]
    assert any(_layer_of_module(n) == LAYERS.index("app") for n in names)
    rel = ast.parse("from ..core import aggregate\n")
    resolved = [n for _, n in _imports(rel, "logscan.parsers.postfix", False)]
    assert "logscan.core" in resolved
