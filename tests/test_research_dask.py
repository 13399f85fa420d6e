"""The rules strategy's folds on Dask (`run_backtest("rules", ..., cluster=N)`, `btcfut backtest --strategy rules --workers N`)
give the in-process result: the same targets, metrics, per-fold table and risk decisions. A small grid keeps it cheap."""
import pandas as pd
from btcfut.core import Config
from btcfut.research import run_backtest

SMALL = {"research.fast_spans": [12, 26], "research.slow_spans": [100], "research.momentum_windows": [72]}

def test_rules_on_a_local_cluster_equal_in_process():
    cfg = Config.load(overrides=SMALL)
    here = run_backtest("rules", "2024-09-01", "2025-01-01", cfg, train="60D", test="30D")
    there = run_backtest("rules", "2024-09-01", "2025-01-01", cfg, train="60D", test="30D", cluster=1)
    assert len(here.walk_forward.folds) == 2 and here.walk_forward.n_trials == 2
    pd.testing.assert_series_equal(there.walk_forward.target, here.walk_forward.target)
    pd.testing.assert_frame_equal(there.metrics, here.metrics)
    pd.testing.assert_frame_equal(there.walk_forward.fold_stats, here.walk_forward.fold_stats)
    rl = lambda r: (r.approved, r.reduced, r.rejected, r.reasons)
    assert rl(there.risk_log) == rl(here.risk_log) and here.risk_log.approved > 0
