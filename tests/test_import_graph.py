"""Imports in `btcfut/` run one way: down the module table of README.md, never up it, and never in a circle.

The graph is built from the source with `ast`: every `import` and `from ... import` anywhere in a file counts,
including those inside functions (a lazy import is still a dependency). A failure lists every offending import
with its file and line.
"""
from __future__ import annotations
import ast, re
from fnmatch import fnmatch
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "btcfut"

# The module table, top to bottom. A module may import its own layer and the layers above it, never one below.
# A compiled-kernel chapter shares its layer with the module it serves (features uses features_kernels).
LAYERS = [
    ["btcfut.core"],
    ["btcfut.data", "btcfut.data.*"],
    ["btcfut.features", "btcfut.features_kernels"],
    ["btcfut.walkforward"],
    ["btcfut.models", "btcfut.models.*"],
    ["btcfut.risk"],
    ["btcfut.sizing"],
    ["btcfut.backtest", "btcfut.backtest_kernels"],
    ["btcfut.metrics"],
    ["btcfut.research"],
    ["btcfut.execution", "btcfut.execution.*"],
    ["btcfut.monitoring", "btcfut.monitoring.*"],
    ["btcfut.live", "btcfut.live.*"],
    ["btcfut.cli"],
]
# The fake exchange stands beside the stack: an independent check of the client and the engine, it uses only the
# core and the data store, and only the command line (the entry point, which may use every module) starts it.
FAKEX = ["btcfut.fakex", "btcfut.fakex.*"]
FAKEX_MAY_IMPORT = ["btcfut.core", "btcfut.data", "btcfut.data.store", *FAKEX]
FAKEX_IMPORTED_BY = ["btcfut.cli", *FAKEX]
ROOT_MODULES = {"btcfut", "btcfut._modidx"}  # the package itself (`__version__`) and nbdev's index

def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__": parts = parts[:-1]
    return ".".join(parts)

def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py")) if "__pycache__" not in p.parts}

def _resolve(node: ast.ImportFrom, mod: str, is_pkg: bool) -> str:
    "Absolute name of the module a `from ... import` reads from."
    if not node.level: return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))

def imports_of(mod: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    "(imported btcfut module, line) for every import in `path`, function-level ones included."
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(node, mod, path.name == "__init__.py")
            # `from btcfut import sizing` imports the module btcfut.sizing
            targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in known else src for a in node.names]
        else: continue
        for t in dict.fromkeys(targets):
            if t == "btcfut" or t.startswith("btcfut."):
                while t not in known and "." in t: t = t.rsplit(".", 1)[0]  # `import btcfut.data.store.x` -> the module
                if t != mod: out.append((t, node.lineno))
    return out

def import_graph() -> dict[str, list[tuple[str, int]]]:
    mods = all_modules()
    return {m: imports_of(m, p, set(mods)) for m, p in mods.items()}

def _matches(mod: str, patterns) -> bool: return any(fnmatch(mod, p) for p in patterns)

def layer_of(mod: str) -> int|None:
    for i, pats in enumerate(LAYERS):
        if _matches(mod, pats): return i
    return None

def _where(mod: str, line: int) -> str:
    return f"{all_modules()[mod].relative_to(ROOT)}:{line}"

def strongly_connected(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    "Tarjan's strongly connected components with more than one module (the import cycles)."
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w, _ in graph.get(v, []):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return out

def test_graph_sees_function_level_and_relative_imports(tmp_path):
    "The parser itself: relative, absolute, `from pkg import module` and imports inside functions all count."
    p = tmp_path / "store.py"
    p.write_text("from .archive import a\nfrom ..core import x\nimport btcfut.sizing\ndef f():\n    from btcfut import risk\n")
    known = {"btcfut.core", "btcfut.data.archive", "btcfut.data.store", "btcfut.sizing", "btcfut.risk"}
    test = imports_of("btcfut.data.store", p, known)
    assert test == [("btcfut.data.archive", 1), ("btcfut.core", 2), ("btcfut.sizing", 3), ("btcfut.risk", 5)], test
    assert strongly_connected({"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)], "d": [("a", 1)]}) == [["a", "b", "c"]]

def test_every_module_has_a_layer():
    lost = [m for m in all_modules() if m not in ROOT_MODULES and layer_of(m) is None and not _matches(m, FAKEX)]
    assert not lost, f"modules missing from the layer table of tests/test_import_graph.py (and README's table): {lost}"

def test_no_import_cycle():
    graph = import_graph()
    cycles = strongly_connected(graph)
    lines = []
    for comp in cycles:
        edges = [f"{a} -> {b} ({_where(a, ln)})" for a in comp for b, ln in graph[a] if b in comp]
        lines.append(" ⇄ ".join(comp) + ":\n    " + "\n    ".join(edges))
    assert not cycles, "import cycles in btcfut/:\n  " + "\n  ".join(lines)

def test_imports_point_down_the_table():
    bad = []
    for mod, deps in import_graph().items():
        if mod in ROOT_MODULES: continue
        for dep, line in deps:
            if dep in ROOT_MODULES: continue
            if _matches(mod, FAKEX):
                if not _matches(dep, FAKEX_MAY_IMPORT):
                    bad.append(f"{mod} imports {dep} ({_where(mod, line)}): the fake exchange may import only "
                               f"btcfut.core and btcfut.data.store")
            elif _matches(dep, FAKEX):
                if not _matches(mod, FAKEX_IMPORTED_BY):
                    bad.append(f"{mod} imports {dep} ({_where(mod, line)}): only btcfut.cli starts the fake exchange")
            elif layer_of(dep) is not None and layer_of(mod) is not None and layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)}, later in the table) "
                           f"({_where(mod, line)})")
    assert not bad, f"{len(bad)} import(s) against the module table:\n  " + "\n  ".join(bad)

def readme_modules() -> list[str]:
    "Module column of README's module table, top to bottom (`btcfut.data.*` kept as a pattern)."
    return re.findall(r"^\|\s*[\w.*]+\s*\|\s*`(btcfut[\w.*]*)`", (ROOT / "README.md").read_text(), re.M)

def test_readme_table_follows_the_layers():
    mods = readme_modules()
    assert mods, "README.md has no module table"
    order = [(m, -1 if _matches(m, FAKEX) else layer_of(m)) for m in mods]
    unknown = [m for m, k in order if k is None]
    assert not unknown, f"README modules missing from LAYERS in tests/test_import_graph.py: {unknown}"
    stack = [(m, k) for m, k in order if k >= 0]
    back = [f"{a} after {b}" for (b, kb), (a, ka) in zip(stack, stack[1:]) if ka < kb]
    assert not back, f"README's module table is out of layer order: {back}"
    listed = set(mods)
    covered = lambda m: any(fnmatch(m, p) or p.startswith(m + ".") for p in listed)  # a package: by its modules
    missing = [m for m in all_modules() if m not in ROOT_MODULES and not covered(m)]
    assert not missing, f"modules not in README's module table (nbs/index.ipynb): {missing}"
