"""The combined strategy (`run_combined_research`): causality with both models retrained, and `btcfut backtest --strategy combined`'s input errors.

Causality: the whole flow runs twice with tiny models retrained from scratch (no cache) — on five days of one-minute bars with
the hourly history before it, and on the same data cut after a minute t inside the second short fold's test window (hourly
bars closing after t dropped too). Every target before t must be identical (the cut's last two minutes close the position
because its data ends there) — the combined strategy's, the long view's
alone and the short signal's alone — and so must the traded positions.
"""
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
from btcfut.core import Config
from btcfut.research import CombinedSettings, combined_samples, run_combined_research

ROOT = Path(__file__).resolve().parents[1]
BTCFUT = str(Path(sys.executable).parent / "btcfut")
TINY = dict(max_epochs=1, patience=1, lookback=24, horizon=48, every=12, hidden_size=4, attention_heads=1,
            hidden_continuous_size=4, n_quantiles=9)
TINY_SHORT = dict(train="2D", test="1D", epochs=1, d_model=8, n_heads=1, n_layers=1, ff_mult=1, max_train_windows=400, lookback=30)

def _cut(s, t):
    "The sample with only what is known at the close of the bar opening at t."
    last = t - pd.Timedelta(s.interval) + pd.Timedelta("1min") if s.interval == "1h" else t # hourly bars that closed by t's close
    mark = None if s.mark is None else s.mark.loc[:last]
    return type(s)(s.bars.loc[:last], mark, s.funding.loc[:t], s.oi, s.symbol, s.interval)

def test_combined_targets_up_to_t_ignore_later_data():
    cfg = Config.load(overrides={"research.models.train": "45D", "research.signals.min_edge": 0.0})
    cs = CombinedSettings(history="30D", long=TINY, short=TINY_SHORT)
    hourly, minute = combined_samples("2025-01-27", "2025-02-01", cfg, cs)
    full = run_combined_research(hourly, minute, cfg, cs, cache_dir=None, progress=False)
    f = full.walk_forward.folds[1]
    t = f.index[f.test_start + 600] # inside the second test window: fold 0 whole, fold 1 partly
    cut = run_combined_research(_cut(hourly, t), _cut(minute, t), cfg, cs, cache_dir=None, progress=False)
    assert cut.timings["models"] == {"long": {"trained": 1}, "short": {"trained": 2}}
    assert cut.walk_forward.target.index[-1] == t
    u = t - 2 * pd.Timedelta("1min") # the cut's last two minutes close the position: the end of its data, not a signal
    a, b = full.walk_forward.target.loc[:u], cut.walk_forward.target.loc[:u]
    assert len(a) == len(b) > 1500
    pd.testing.assert_series_equal(a, b)
    pd.testing.assert_series_equal(full.result.position.loc[:u], cut.result.position.loc[:u])
    for k in ("long view only", "short signal only"):
        pd.testing.assert_series_equal(full.others[k].position.loc[:u], cut.others[k].position.loc[:u])
    assert full.result.position.loc[:u].abs().sum() > 0 # the comparison covers positions, not only flat minutes
    assert full.others["short signal only"].position.loc[:u].ne(0).sum() > 0

def run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([BTCFUT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "BTCFUT_CONFIG": "", "BTCFUT_DATA_DIR": ""})

def bad(r: subprocess.CompletedProcess, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    err = r.stderr.strip().splitlines()
    assert err and err[-1].startswith("error:") and "Traceback" not in r.stderr, r.stderr[-2000:]
    for w in words: assert w in err[-1], err[-1]

def test_range_without_minute_bars():
    bad(run("backtest", "--strategy", "combined", "--start", "2024-01-01", "--end", "2024-03-01"),
        "no 1m bars", "2023-07-18 11:13 → 2023-08-17 11:11", "2025-05-04 15:33 → 2025-05-31 23:59")

def test_not_enough_hourly_history(tmp_path):
    cfg = tmp_path/"long_train.yaml"; cfg.write_text("research:\n  models:\n    train: 1400D\n")
    bad(run("--config", str(cfg), "backtest", "--strategy", "combined", "--start", "2023-07-01", "--end", "2023-09-01"),
        "not enough 1h history", "1400D")
