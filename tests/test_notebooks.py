"""Every notebook's test cells, one pytest test per notebook, each in its own process (as nbdev-test does)."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("_"))

RUNNER = r"""
import sys
from nbdev.config import get_config
from nbdev.test import test_nb
flags = get_config().tst_flags.split()
ok, secs = test_nb(sys.argv[1], skip_flags=flags, showerr=True)
print(f"{sys.argv[1]}: {'ok' if ok else 'FAILED'} in {secs:.1f}s")
sys.exit(0 if ok else 1)
"""

@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    env = {**os.environ, "PYTHONHASHSEED": "0", "BTCFUT_CONFIG": ""}
    r = subprocess.run([sys.executable, "-c", RUNNER, str(nb)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.fail(f"notebook {nb.name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}", pytrace=False)
