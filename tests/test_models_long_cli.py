"""`btcfut train long` and `btcfut evaluate long` end to end on the bundled store, with a tiny model configuration."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BTCFUT = str(Path(sys.executable).parent / "btcfut")
TINY = """models:
  long:
    lookback: 24
    horizon: 48
    hidden_size: 8
    attention_heads: 1
    hidden_continuous_size: 4
    every: 12
    test_every: 12
    max_epochs: 2
    patience: 1
    batch_size: 32
    lgbm_estimators: 20
    train: 90D
    test: 20D
"""

def run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([BTCFUT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "BTCFUT_CONFIG": ""})

def test_train_then_evaluate_long(tmp_path):
    cfg = tmp_path/"tiny.yaml"; cfg.write_text(TINY)
    r = run("--config", str(cfg), "train", "long", "--start", "2024-06-01", "--end", "2024-09-01", "--out", str(tmp_path/"m"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["params"] > 0 and (tmp_path/"m"/"card.json").is_file()
    r = run("--config", str(cfg), "evaluate", "long", "--models", str(tmp_path/"m"), "--start", "2024-09-10", "--end", "2024-11-01",
            "--json", str(tmp_path/"ev.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out["overall"]) == {"tft", "unconditional", "ewma_gauss", "lightgbm"} and out["n"] > 0
    full = json.loads((tmp_path/"ev.json").read_text())
    assert {"scores", "comparison", "lag"} <= set(full)

def test_walk_forward_evaluation_saves_fold_models(tmp_path):
    cfg = tmp_path/"tiny.yaml"; cfg.write_text(TINY)
    r = run("--config", str(cfg), "evaluate", "long", "--walk-forward", "--max-folds", "1", "--models", str(tmp_path/"wf"),
            "--start", "2024-10-01", "--end", "2025-01-01")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n"] > 0 and set(out["vs_tft"]) == {"unconditional", "ewma_gauss", "lightgbm"}
    assert (tmp_path/"wf"/"fold_00"/"card.json").is_file()

def test_bad_input_gets_a_clear_error(tmp_path):
    r = run("evaluate", "long", "--models", str(tmp_path/"nothing"), "--start", "2024-09-10")
    assert r.returncode == 2 and "no model at" in r.stderr, r.stderr[-2000:]
    r = run("train", "long", "--start", "2024-09-01", "--end", "2024-06-01", "--out", str(tmp_path/"m"))
    assert r.returncode == 2 and "must be before" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path/"m").exists()
