"""Causality of the model strategy: the stitched out-of-sample targets up to time t depend only on data up to t.

The whole flow runs twice with the models retrained from scratch (no cache): on the data, and on the data cut after t
(a bar inside a test window). Every target at or before t must be identical; so must the risk-checked, traded positions.
"""
import numpy as np, pandas as pd
from btcfut.core import Config
from btcfut.data.store import load_sample
from btcfut.research import ModelSettings, run_model_research

TINY = dict(max_epochs=1, patience=1, lookback=24, horizon=48, every=12, hidden_size=4, attention_heads=1,
            hidden_continuous_size=4, n_quantiles=9)

def _cut(s, t):
    return type(s)(s.bars.loc[:t], s.mark.loc[:t], s.funding.loc[:t], s.oi, s.symbol, s.interval)

def test_targets_up_to_t_ignore_later_data():
    cfg = Config.load(overrides={"research.start": "2024-09-01", "research.end": "2025-01-15"})
    ms = ModelSettings(train="45D", test="15D", first_test="2024-12-01", long=TINY)
    s = load_sample("1h", start="2024-09-01", end="2025-01-15")
    full = run_model_research(s, cfg, ms, cache_dir=None, progress=False)
    f = full.walk_forward.folds[1]
    t = f.index[f.test_start + 100] # inside the second test window: fold 0 whole, fold 1 partly
    cut = run_model_research(_cut(s, t), cfg, ms, cache_dir=None, progress=False)
    assert cut.timings["models"]["trained"] == 2 and full.timings["models"]["trained"] == len(full.walk_forward.folds)
    a, b = full.walk_forward.target.loc[:t], cut.walk_forward.target.loc[:t]
    assert len(a) == len(b) > 300
    pd.testing.assert_series_equal(a, b)
    assert a.fillna(0).abs().sum() > 0 # the comparison covers positions, not only flat bars
    pa, pb = full.result.position.loc[:t], cut.result.position.loc[:t]
    pd.testing.assert_series_equal(pa, pb)
