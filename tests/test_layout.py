"""The package's shape: imports point one way, no cycles, no Gradio below ui/, short functions and modules.

Every module of llmcxr_app/ is parsed with `ast` (nothing is imported), taking top-level AND function-level
imports, so a deferred import cannot hide a cycle or a layering break.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llmcxr_app"

# Layer of each part of the package -> the parts it may import (its own part is always allowed; cycles
# inside a part are caught by the cycle test). ui -> studio -> engine -> modeling; loading and imaging sit
# below the studio; the command-line tools and the demo sit on top, beside the UI, and never import it.
# The package root (__version__), settings, the token protocol, and redaction (privacy: log and image
# scrubbing that every layer reading user files applies).
BASE = {"llmcxr_app", "config", "protocol", "redact"}
ALLOWED: dict[str, set[str]] = {
    "config": {"llmcxr_app"},
    "protocol": {"llmcxr_app"},
    "redact": {"llmcxr_app"},
    "modeling": BASE,
    "engine": BASE | {"modeling"},
    "loading": BASE | {"modeling"},
    "imaging": BASE | {"modeling"},
    "studio": BASE | {"modeling", "engine", "loading", "imaging"},
    "ui": BASE | {"modeling", "engine", "loading", "imaging", "studio"},
    "cli_args": BASE | {"loading"},
    "__main__": BASE | {"cli_args", "imaging", "studio"},
    "bench": BASE | {"modeling", "engine", "loading", "imaging"},
    "convert": BASE | {"loading"},
    "demo": BASE | {"modeling", "engine", "loading", "imaging", "studio"},
}
# Only the UI talks to Gradio (and to ZeroGPU's `spaces`).
UI_ONLY = {"gradio", "spaces"}

# Short enough to read at once: a longer function is split into named steps, a longer module by concern.
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 420


def module_name(path: Path) -> str:
    parts = ["llmcxr_app", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports_of(name: str) -> list[tuple[str, int]]:
    """(imported name, line) of every import in the module, at any depth; relative imports resolved.

    ``from a.b import c`` counts as an import of a.b.c when that is a module, else of a.b.
    """
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    here = name if is_package(name) else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, node.lineno))
    return found


def internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name in MODULES:
        for target, _ in imports_of(name):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def part(name: str) -> str:
    """The layer a module belongs to: its first name under llmcxr_app ("llmcxr_app" for the root)."""
    pieces = name.split(".")
    return pieces[1] if len(pieces) > 1 else "llmcxr_app"


def test_every_part_has_a_rule():
    assert {part(m) for m in MODULES} - {"llmcxr_app"} <= set(ALLOWED), "add the new part to ALLOWED"


def test_no_import_cycles():
    graph = internal_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_follow_the_layers():
    wrong = []
    for name in MODULES:
        mine = part(name)
        for target, line in imports_of(name):
            if not target.startswith("llmcxr_app"):
                continue
            theirs = part(target)
            if mine != "llmcxr_app" and theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{name}:{line} imports {target} ({mine} may not import {theirs})")
    assert not wrong, "\n".join(wrong)


def test_nothing_below_ui_imports_gradio():
    wrong = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if part(name) != "ui"
        for target, line in imports_of(name)
        if target.split(".")[0] in UI_ONLY
    ]
    assert not wrong, "\n".join(wrong)


def test_the_network_file_does_no_io():
    """modeling/ holds networks only: no loading code, no file formats."""
    wrong = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if part(name) == "modeling"
        for target, line in imports_of(name)
        if target.split(".")[0] in {"safetensors", "yaml", "pickle", "huggingface_hub"}
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_and_modules_are_short(name):
    path = MODULES[name]
    rel = path.relative_to(PACKAGE.parent).as_posix()
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{rel}: split it by concern"
    long = [
        f"{rel}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_the_formatter_owns_every_line():
    """ruff format owns the layout: no module or test packs code by hand."""
    tests = sorted(Path(__file__).parent.glob("*.py"))
    marked = [
        p.relative_to(PACKAGE.parent).as_posix()
        for p in [*MODULES.values(), *tests]
        if "fmt: " + "skip" in p.read_text(encoding="utf-8")  # split, so this file is not marked
    ]
    assert marked == []
