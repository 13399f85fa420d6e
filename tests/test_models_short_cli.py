"""`btcfut train short` and `btcfut evaluate short` as a user runs them (real processes), on three days of the bundled
real 1m bars with a tiny model configuration; then the trained directories served through the fallback chain."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BTCFUT = str(Path(sys.executable).parent / "btcfut")
TINY = """models:
  short:
    d_model: 16
    n_heads: 2
    n_layers: 1
    epochs: 1
    batch_size: 128
    max_train_windows: 1500
    train: 1D
    test: 12h
"""

def run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([BTCFUT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "BTCFUT_CONFIG": ""})

@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg")/"tiny.yaml"; p.write_text(TINY); return p

def test_train_short_then_serve(tiny_config, tmp_path):
    r = run("--config", str(tiny_config), "train", "short", "--start", "2025-02-01", "--end", "2025-02-04", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["fit_windows"] > 1000 and 0 < summary["confidence_threshold"] <= 1
    from btcfut.data.store import load_sample
    from btcfut.models.short import short_features
    from btcfut.models.serve import ShortPredictor, predict_short
    s = load_sample("1m", "2025-02-04", "2025-02-05")
    feats = short_features(s.bars, s.funding)
    sp = ShortPredictor(tmp_path/"short", tmp_path/"baseline", deadline_ms=10_000)
    res = predict_short(feats, sp, times=feats.index[-100:])
    assert res.source == "model" and len(res) == 100 and set(res.signal.tolist()) <= {-1, 0, 1}
    (tmp_path/"short"/"weights.pt").write_bytes(b"corrupt")
    assert ShortPredictor(tmp_path/"short", tmp_path/"baseline").predict(feats).source == "baseline"

def test_evaluate_short_json(tiny_config, tmp_path):
    out = tmp_path/"eval.json"
    r = run("--config", str(tiny_config), "evaluate", "short", "--start", "2025-02-01", "--end", "2025-02-04", "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["n_folds"] >= 1
    assert set(res["overall"]) == {"transformer", "majority", "logistic", "lightgbm"}
    for m in res["overall"].values(): assert 0 < m["log_loss"] < 5 and 0 <= m["balanced_accuracy"] <= 1
    costs = {(b["cost"], b["model"]): b for b in res["backtest"]}
    assert costs[("taker", "do_nothing")]["pnl"] == 0

def test_bad_range_is_a_clear_error(tiny_config):
    r = run("--config", str(tiny_config), "evaluate", "short", "--start", "2031-01-01", "--end", "2031-01-02")
    assert r.returncode == 2 and "error" in r.stderr
