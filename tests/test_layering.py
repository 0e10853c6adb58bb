"""The package's layers, read from its source with `ast` (every import counts: module level, inside functions
and under TYPE_CHECKING), so a lazy import cannot hide a dependency.

    core (llmtrunc/*.py)   never imports llmtrunc.llm, llmtrunc.encoder, llmtrunc.commands or llmtrunc.lm_eval
    llm, encoder           never import llmtrunc.commands (CLI code lives only there)
    every module           takes part in no import cycle
    hashlib                only in llmtrunc.files; no __dict__ / __new__ surgery and no writes to lm-eval's or
                           transformers' registries outside llmtrunc.llm.compat

The entry points sit above everything: `llmtrunc.cli` (the console script) and `llmtrunc.lm_eval` (lm-eval's CLI).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "llmtrunc"
ENTRY_POINTS = ("llmtrunc.cli", "llmtrunc.lm_eval")
TRACKS = ("llmtrunc.llm", "llmtrunc.encoder")
ABOVE_CORE = (*TRACKS, "llmtrunc.commands", "llmtrunc.lm_eval")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path) -> set[str]:
    """The llmtrunc modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # `from pkg import module` names the module, `from module import x` the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_import_parser_sees_function_level_and_relative_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from llmtrunc.llm import hooks\n    from . import spec\n    import llmtrunc.record\n")
    assert imported("llmtrunc.x", source) == {"llmtrunc.llm.hooks", "llmtrunc.spec", "llmtrunc.record"}


def test_core_never_imports_the_tracks_or_the_cli():
    core = [m for m in GRAPH if not within(m, (*ABOVE_CORE, *ENTRY_POINTS))]
    assert "llmtrunc.spec" in core and "llmtrunc.record" in core
    wrong = {m: sorted(d for d in GRAPH[m] if within(d, ABOVE_CORE)) for m in core}
    assert not {m: d for m, d in wrong.items() if d}


def test_the_tracks_never_import_the_cli():
    wrong = {m: sorted(d for d in deps if within(d, ("llmtrunc.commands", *ENTRY_POINTS)))
             for m, deps in GRAPH.items() if within(m, TRACKS)}
    assert not {m: d for m, d in wrong.items() if d}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def attributes(path: Path, names: set[str]) -> list[int]:
    """The lines of `path` that read or write one of the attributes `names` (obj.__dict__, cls.__new__ ...)."""
    tree = ast.parse(path.read_text(), str(path))
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in names)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (any package), by its full dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_hashing_lives_only_in_files():
    """One home for content hashes: every other module asks llmtrunc.files."""
    users = sorted(name for name, path in MODULES.items() if "hashlib" in imports_of(path))
    assert users == ["llmtrunc.files"]


def test_no_dict_or_new_surgery_outside_compat():
    """Reaching into an object's __dict__ or building one through __new__ relies on a class's internals: only
    llmtrunc.llm.compat (each such reliance pinned by tests/llm/test_compat.py) may."""
    found = {name: lines for name, path in MODULES.items() if name != "llmtrunc.llm.compat"
             if (lines := attributes(path, {"__dict__", "__new__"}))}
    assert not found


def test_library_registries_are_written_only_by_compat():
    """lm-eval's model registry and transformers' attention functions are filled by llmtrunc.llm.compat when it is
    installed at start-up, never by importing a module."""
    names = {"register_model", "model_registry", "AttentionInterface"}
    found = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        used = {node.lineno for node in ast.walk(tree)
                if isinstance(node, ast.Name) and node.id in names or isinstance(node, ast.Attribute) and node.attr in names
                or isinstance(node, ast.ImportFrom) and {alias.name for alias in node.names} & names}
        if used and name != "llmtrunc.llm.compat":
            found[name] = sorted(used)
    assert not found


def test_the_surgery_check_sees_it(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("a = object.__new__(A)\nb = a.__dict__\nc = a.dict\n")
    assert attributes(source, {"__dict__", "__new__"}) == [1, 2]
