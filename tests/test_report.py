"""The research report opened in headless Chromium: it renders, plotly draws every chart, nothing reaches the network.

Runs a short walk-forward demo with the model strategy beside the rules (real bundled data, the same
`run_demo(models=True)` as `make demo`, a tiny forecaster on three folds) into a temporary directory, then loads the
HTML with Chromium once: it dumps the DOM after scripts ran (plotly's SVGs must be there, one per chart, and no
uncaught script error in the console) and takes a 1280x5400 screenshot down to the calibration charts, kept at
tests/artifacts/report.png for a look.
"""
import os, re, shutil, subprocess, tempfile
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make sysdeps` installs it with apt-get)")

# a short demo: ~9 months of 1h bars, 60-day training windows, 30-day tests; the models on the last ~4 months
DEMO_OVERRIDES = {"research.start": "2024-09-01", "research.train": "60D", "research.test": "30D"}
TINY = dict(max_epochs=1, patience=1, lookback=24, horizon=48, every=12, hidden_size=4, attention_heads=1,
            hidden_continuous_size=4, n_quantiles=9)
CHARTS = ("Equity (USDT)", "Drawdown", "Position (BTC) and leverage", "Distance to liquidation", "Cumulative funding",
          "Walk-forward folds", "Models: walk-forward folds", "Forecast fan", "Calibration: PIT histogram",
          "Calibration: share of realized returns")


def chromium(*args, profile: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    from btcfut.core import Config
    from btcfut.research import ModelSettings, run_demo
    out = tmp_path_factory.mktemp("report") / "demo.html"
    ms = ModelSettings(train="45D", test="40D", first_test="2025-02-01", long=TINY)
    res = run_demo(Config.load(overrides=DEMO_OVERRIDES), out=out, progress=False, console=False, models=True,
                   models_dir=out.parent / "models", ms=ms)
    return out, res


def test_report_is_self_contained(demo_report):
    out, res = demo_report
    html = out.read_text()
    assert html.count("window.PlotlyConfig") == 1, "plotly.js must be inlined exactly once"
    # no resource is fetched from elsewhere: no external src/href on script, link or img tags
    external = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?:)?//[^"]+"', html)
    assert not external, f"external resources: {external[:3]}"
    for title in CHARTS:
        assert title in html, f"chart {title!r} missing"
    assert "quantstats tearsheet" in html and "Key Performance Metrics" in html
    assert res.metrics.loc["sharpe"].notna().all()
    # the managed runs are drawn beside the same targets without risk halts, the models beside the rules
    assert res.metrics.columns.tolist() == ["strategy", "strategy, no halts", "models", "models, no halts", "buy and hold"]
    for name in ("strategy, no halts", "models", "models, no halts"):
        assert html.count(f'"name":"{name}"') == 2, f"{name} equity and drawdown traces missing"
    n = res.walk_forward.n_trials * res.settings.rule_variants_tried + res.models.settings.rule_variants_tried
    assert (res.metrics.loc["n_trials"].iloc[:-1] == n).all(), "every DSR counts every trial of both strategies"
    assert len(res.models.walk_forward.folds) == 3 and res.models.forecasts


def test_report_renders_in_chromium(demo_report):
    out, _ = demo_report
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        # one load: the DOM after scripts ran, a screenshot down to the calibration charts, and the page's console
        # (--enable-logging=stderr), where an uncaught script error shows as "Uncaught ..."
        r = chromium("--enable-logging=stderr", "--virtual-time-budget=10000", "--window-size=1280,5400", f"--screenshot={shot}",
                     "--dump-dom", out.as_uri(), profile=Path(profile))
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    # plotly replaces each chart's empty div by an SVG with class main-svg once its script has run
    n_plots = r.stdout.count('class="plot-container plotly"')
    assert n_plots >= len(CHARTS), f"only {n_plots} plotly charts were drawn"
    console_errors = [l for l in r.stderr.splitlines() if ":CONSOLE" in l and ("Uncaught" in l or "Error" in l)]
    assert not console_errors, console_errors[:5]
    assert shot.stat().st_size > 20_000, "screenshot is suspiciously small (blank page?)"
    png = _png_pixels(shot)
    if png is not None:  # a blank page is one colour; a rendered report has text, lines and fills
        rgb = png.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32) # one int per colour
        assert png.std() > 10 and len(np.unique(rgb[::7])) > 50


def _png_pixels(path: Path):
    try:
        import matplotlib.image as mpimg
    except ImportError:
        return None
    return (mpimg.imread(path)[..., :3] * 255).astype(np.uint8)
