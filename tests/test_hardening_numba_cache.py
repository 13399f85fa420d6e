"""`make test` tests the code as written, not a stale numba cache.

numba keys a cached function by its own source only: after an edit to a jitted helper, an unchanged caller's cached
machine code keeps running the old helper, across modules and in notebook cells (whose cache lives under
$XDG_CACHE_HOME/ipython, which NUMBA_CACHE_DIR does not redirect). The Makefile gives every `make test` run fresh,
empty caches. Here a temporary package (a helper module, a caller module, and a notebook cell calling the helper) is
tested, the helper is edited, and it is tested again: with a cache kept between runs the edit is missed; under
`make test`, even with that stale cache named in the environment, the edit is seen.
"""
import os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

PROBE = r'''
import os, sys
from pathlib import Path
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE/"pkg"))
EXPECT = int(os.environ["EXPECT"])

def test_caller_in_another_module_sees_the_helper():
    import caller
    assert caller.f(1) == EXPECT

def test_notebook_cell_sees_the_helper():
    from execnb.shell import CaptureShell # the shell nbdev runs notebook tests in
    sh = CaptureShell()
    for src in [f"import sys; sys.path.insert(0, {str(HERE/'pkg')!r})",
                "from numba import njit\nfrom helper import h\n@njit(cache=True)\ndef g(x): return h(x) * 10",
                "result = g(1)"]:
        sh.run(src)
        assert sh.exc is None, sh.exc
    assert sh.user_ns["result"] == EXPECT
'''


def make_package(d:Path):
    (d/"pkg").mkdir(parents=True)
    (d/"pkg"/"helper.py").write_text("from numba import njit\n@njit(cache=True)\ndef h(x): return x + 1\n")
    (d/"pkg"/"caller.py").write_text("from numba import njit\nfrom helper import h\n@njit(cache=True)\ndef f(x): return h(x) * 10\n")
    (d/"test_probe.py").write_text(PROBE)


def run(d:Path, expect:int, env:dict, make:bool) -> subprocess.CompletedProcess:
    env = {**env, "EXPECT": str(expect), "PYTHONPATH": str(ROOT)}
    cmd = (["make", "--no-print-directory", "-o", "venv", "-o", "sysdeps", "-C", str(ROOT), "test", f"TESTS={d/'test_probe.py'} -p no:cacheprovider"]
           if make else [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(d/"test_probe.py")])
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_make_test_sees_an_edited_jitted_helper(tmp_path):
    d = tmp_path/"probe"; make_package(d)
    stale = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path/"kept"/"numba"), "XDG_CACHE_HOME": str(tmp_path/"kept"/"xdg")}
    r = run(d, 20, stale, make=False) # warms the kept caches
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert any((tmp_path/"kept"/"xdg"/"ipython").rglob("*.nbi")) # the notebook cell's cache is under XDG_CACHE_HOME
    (d/"pkg"/"helper.py").write_text("from numba import njit\n@njit(cache=True)\ndef h(x): return x + 2\n") # the edit
    r = run(d, 30, stale, make=False)
    assert r.returncode != 0 and "2 failed" in r.stdout, r.stdout[-3000:] # the hazard: both callers run the old helper
    r = run(d, 30, stale, make=True) # `make test`, with the stale caches still named in the environment
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert "fresh numba/IPython caches" in r.stdout
