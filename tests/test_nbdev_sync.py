"""The committed library is exactly what the notebooks export, and the notebooks are clean."""
import shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def _copy_project(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if not src.is_file() or f.startswith("data/"): continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / f)
    return dst

def _snapshot(root: Path, sub: str) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / sub).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts}

def _changed_by(tool: str, sub: str, tmp_path) -> list[str]:
    "Files under `sub` that running the nbdev command `tool` on a copy of the project changes."
    proj = _copy_project(tmp_path / "proj")
    before = _snapshot(proj, sub)
    subprocess.run([str(BIN / tool)], cwd=proj, check=True, capture_output=True)
    after = _snapshot(proj, sub)
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))

def test_export_changes_nothing(tmp_path):
    changed = _changed_by("nbdev-export", "btcfut", tmp_path)
    assert not changed, f"nbdev-export changes {changed}: edit the notebooks, export, commit both"

def test_notebooks_are_clean(tmp_path):
    changed = _changed_by("nbdev-clean", "nbs", tmp_path)
    assert not changed, f"nbdev-clean changes {changed}: run nbdev-clean and commit"
