"""The docs site builds offline, and a real headless Chromium renders its index and every module page."""
import json, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
sys.path.insert(0, str(ROOT / "tools"))
import build_docs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]

def chromium(*args, tmp: Path, timeout=120) -> str:
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp}", *args], capture_output=True, text=True, timeout=timeout)
    return r.stdout

def exported_modules() -> dict[str, str]:
    "notebook name → module, from each notebook's `#| default_exp`."
    out = {}
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        m = re.search(r"#\|\s*default_exp\s+([\w.]+)", nb.read_text())
        if m: out[nb.stem] = m.group(1)
    return out

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "_docs"
    return build_docs.offline_site(out, run=False).parent

def test_readme_is_generated_from_index():
    assert (ROOT / "README.md").read_text() == build_docs.readme_markdown(), "README.md is stale: run make docs"
    lines = [l for l in (ROOT / "README.md").read_text().splitlines() if l.startswith("make ")]
    assert lines[0].startswith("make demo") and lines[1].startswith("make test")

def test_every_module_has_a_linked_page(site):
    pages = {p["href"]: p["title"] for p in json.loads((site / "pages.json").read_text())}
    index = (site / "index.html").read_text()
    for nb, module in exported_modules().items():
        href = re.sub(r"^\d+[a-z]?_", "", nb) + ".html"  # nbdev names a page after its notebook, less the number
        assert href in pages, f"no docs page for module btcfut.{module} (notebook {nb}); pages: {sorted(pages)}"
        assert f'href="{href}"' in index, f"the index does not link {href} (btcfut.{module})"
        assert (site / href).stat().st_size > 10_000
    assert 'id="bf-search"' in index

@pytest.mark.skipif(not CHROMIUM, reason="chromium not installed (make venv installs it)")
def test_chromium_renders_index_and_pages(site, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "docs_index.png"
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", "--window-size=1280,900", (site / "index.html").as_uri(), tmp=tmp_path)
    assert shot.exists() and shot.stat().st_size > 10_000, "no screenshot of the docs index"
    for p in json.loads((site / "pages.json").read_text()):
        dom = chromium("--dump-dom", (site / p["href"]).as_uri(), tmp=tmp_path)
        assert f'<h1 class="bf-title">{p["title"]}</h1>' in dom, f"{p['href']} did not render its title"
        assert "bf-modules" in dom and "Traceback" not in dom, f"{p['href']} rendered badly"
        if p["href"] != "index.html":
            assert dom.count("<h2") + dom.count("<h3") >= 1, f"{p['href']} has no sections / API docs"
