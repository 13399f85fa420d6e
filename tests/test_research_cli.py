"""`btcfut backtest` as a real process on the bundled store: both strategies end to end (small configurations), and every bad input a one-line error with exit code 2."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BTCFUT = str(Path(sys.executable).parent / "btcfut")
TINY = """models:
  long:
    lookback: 24
    horizon: 48
    hidden_size: 4
    attention_heads: 1
    hidden_continuous_size: 4
    n_quantiles: 9
    every: 12
    batch_size: 32
"""

def run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([BTCFUT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "BTCFUT_CONFIG": "", "BTCFUT_DATA_DIR": ""})

def bad(r: subprocess.CompletedProcess, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = r.stderr.strip().splitlines()
    assert err and err[-1].startswith("error:"), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    for w in words: assert w in err[-1], err[-1]

def test_rules_writes_json_and_report(tmp_path):
    r = run("backtest", "--strategy", "rules", "--start", "2024-09-01", "--end", "2025-01-01", "--train", "60D", "--test", "30D",
            "--json", str(tmp_path/"m.json"), "--report", str(tmp_path/"r.html"))
    assert r.returncode == 0, r.stderr[-3000:]
    js = json.loads((tmp_path/"m.json").read_text())
    assert js["strategy"] == "rules" and js["folds"] >= 2
    assert set(js["metrics"]) >= {"strategy", "buy and hold"} and "sharpe" in js["metrics"]["strategy"]
    assert js["out_of_sample"]["start"] >= "2024-10" # the first training window is never scored
    assert (tmp_path/"r.html").stat().st_size > 10_000

def test_models_trains_then_reads_the_cache(tmp_path):
    cfg = tmp_path/"tiny.yaml"; cfg.write_text(TINY)
    args = ("--config", str(cfg), "backtest", "--strategy", "models", "--start", "2024-09-01", "--end", "2024-12-10",
            "--train", "45D", "--test", "30D", "--models", str(tmp_path/"models"), "--json", str(tmp_path/"m.json"))
    r = run(*args); assert r.returncode == 0, r.stderr[-3000:]
    js = json.loads((tmp_path/"m.json").read_text())
    assert js["strategy"] == "models" and js["timings"]["models"] == {"trained": js["folds"]}
    r = run(*args); assert r.returncode == 0, r.stderr[-3000:]
    js2 = json.loads((tmp_path/"m.json").read_text())
    assert js2["timings"]["models"] == {"cached": js["folds"]}
    assert js2["metrics"] == js["metrics"]

def test_unknown_strategy():
    bad(run("backtest", "--strategy", "magic", "--start", "2024-01-01", "--end", "2024-02-01"), "magic", "rules", "models")

@pytest.mark.parametrize("start,end,words", [
    ("2024-02-01", "2024-02-01", ["--start", "not before"]),
    ("2024-03-01", "2024-02-01", ["--start", "not before"]),
    ("2031-01-01", "2031-06-01", ["outside the store"]),
    ("2019-01-01", "2020-06-01", ["outside the store", "2019-09-08"]),
    ("yesterday-ish", "2020-06-01", ["--start", "not a time"]),
])
def test_bad_ranges(start, end, words):
    bad(run("backtest", "--start", start, "--end", end), *words)

def test_models_dir_from_another_feature_set(tmp_path):
    d = tmp_path/"models"; d.mkdir()
    (d/"feature_set.json").write_text(json.dumps({"interval": "1h", "columns": ["ret_1", "not_a_feature_here"]}))
    bad(run("backtest", "--strategy", "models", "--start", "2024-06-01", "--end", "2025-01-01", "--models", str(d)),
        "another feature set", "not_a_feature_here")
