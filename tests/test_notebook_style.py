"""Notebook hygiene that nbdev's docs build depends on."""
import ast, re
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))

def _mixed_import_cells(nb):
    "Non-export code cells (hidden ones too) that import and also do other work (nbdev-proc-nbs executes every cell with an import)."
    for c in nb.cells:
        if c.cell_type != "code" or re.search(r"^#\|\s*(export|exporti|exports|eval:\s*false)", c.source, re.M): continue
        if "nbdev_export()" in c.source: continue # nbdev never runs the export cell
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
def test_starts_with_title_and_summary(nb):
    "A chapter opens with `# Title` and, on the next non-empty line, a `> one-line summary` (nbdev's description)."
    first = nbformat.read(nb, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), f"{nb.name} must open with a markdown title"
    lines = [l for l in first.source.splitlines()[1:] if l.strip()]
    assert lines and lines[0].startswith("> ") and len(lines[0]) > 10, \
        f"{nb.name}: the title must be followed by a '> one-line summary' line, got {lines[0][:60] if lines else 'nothing'!r}"

# Documents that live outside the repository: the docs site and the notebooks are all a user has, so a notebook
# states the rule or formula where it uses it instead of pointing to them.
OUTSIDE_DOCS = re.compile(r"\bDESIGN\b(?:\.md)?(?:\s*§\s*\d+)?|\b(?:STYLE|NBDEV)\.md\b|(?i:\bfoundation issue\b|\bissue\s*#?\d+\b)")

def outside_references(nb) -> list[str]:
    "`cell N: …text…` for every reference to a document outside the repository, in any cell."
    out = []
    for i, c in enumerate(nb.cells):
        for line in c.source.splitlines():
            for m in OUTSIDE_DOCS.finditer(line):
                out.append(f"cell {i}: …{line[max(0, m.start() - 40):m.end() + 20]}…")
    return out

def test_reference_pattern():
    found = lambda s: bool(OUTSIDE_DOCS.search(s))
    assert found("rules of DESIGN §4") and found("see the foundation issue") and found("as issue 13 asks") and found("NBDEV.md")
    assert not found("a design choice") and not found("no issue with 13 bars") and not found("Bailey (2014, §3)")

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_reference_outside_the_repository(nb):
    refs = outside_references(nbformat.read(nb, as_version=4))
    assert not refs, f"{nb.name} points to documents outside the repository; state the rule where it is used:\n  " + "\n  ".join(refs)
