"""Notebook hygiene that nbdev's docs build depends on."""
import ast, re
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))

def _mixed_import_cells(nb):
    "Non-export code cells that import and also do other work (nbdev-proc-nbs executes every cell with an import)."
    for c in nb.cells:
        if c.cell_type != "code" or re.search(r"^#\|\s*(export|exporti|exports|hide|eval:\s*false)", c.source, re.M): continue
        src = "\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!")))
        try: tree = ast.parse(src)
        except SyntaxError: continue
        imports = any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
        other = any(not isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)
        if imports and other: yield c.source.splitlines()[0][:80]

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_imports_stand_alone(nb):
    bad = list(_mixed_import_cells(nbformat.read(nb, as_version=4)))
    assert not bad, f"{nb.name}: cells mixing imports with other code (docs build would execute them): {bad}"

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_starts_with_title(nb):
    first = nbformat.read(nb, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{nb.name} must open with a markdown title"
