"""The house's layers, checked over the source (``ast`` imports, no import side effects).

- ``core`` (the kernel) imports nothing of ours;
- ``stream``, ``chat`` and ``commerce`` import ``core`` and their own modules only: never
  ``jangteo`` (the composition root), never each other (chat orders are a hook commerce
  registers; events go through ``core.events``);
- no import cycle between files; no module over MAX_LINES.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "stream", "chat", "commerce", "jangteo")
SIBLINGS = ("stream", "chat", "commerce")
MAX_LINES = 450


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every import of ours in ``path``, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" for a in node.names]
            targets = [t if t in modules else source for t in targets]
        else:
            continue
        for target in targets:
            if target.split(".")[0] in PACKAGES:
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                yield target, node.lineno


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(root: Path) -> list[str]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    found = []
    for name, path in modules.items():
        top = name.split(".")[0]
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(root)}: {lines} lines (the limit is {MAX_LINES})")
        for target, line in _imports(name, path, modules):
            where = f"{path.relative_to(root)}:{line}: {name} imports {target}"
            other = target.split(".")[0]
            if top == "core" and other != "core":
                found.append(f"{where} (the kernel imports nothing of ours)")
            elif top in SIBLINGS and other == "jangteo":
                found.append(f"{where} (only the composition root imports jangteo)")
            elif top in SIBLINGS and other in SIBLINGS and other != top:
                found.append(f"{where} (stream, chat and commerce do not import each other)")
            if target in modules and target != name:
                graph[name].add(target)
    found += [f"import cycle: {' → '.join(c)}" for c in _cycles(graph)]
    return found


def test_the_tree_keeps_its_layers() -> None:
    assert violations(ROOT) == []


def _copy(tmp: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp / package, ignore=shutil.ignore_patterns("static"))
    return tmp


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + "\n" + line + "\n")


def test_a_kernel_module_importing_the_app_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root / "core" / "keys.py", "from jangteo.app import create_app  # noqa")
    found = violations(root)
    assert any("core.keys imports jangteo.app (the kernel" in v for v in found), found
    assert any(v.startswith("import cycle:") and "core.keys" in v for v in found), found


def test_a_package_importing_the_root_or_a_sibling_is_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root / "chat" / "store.py", "import commerce.orders")
    _append(root / "stream" / "errors.py", "from jangteo import context")
    found = violations(root)
    assert any("chat.store imports commerce.orders (stream, chat" in v for v in found), found
    assert any("stream.errors imports jangteo.context (only the" in v for v in found), found


def test_a_file_cycle_and_a_long_module_are_caught(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _append(root / "core" / "ratelimit.py", "from .tasks import TaskSet")
    _append(root / "core" / "tasks.py", "from . import ratelimit\n" + "x = 1\n" * MAX_LINES)
    found = violations(root)
    assert "import cycle: core.ratelimit → core.tasks" in found, found
    assert any(v.startswith("core/tasks.py: ") and "lines" in v for v in found), found
