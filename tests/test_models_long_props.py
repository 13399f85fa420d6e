"""Properties of the model data and evaluation helpers over random inputs (fast; no training)."""
import numpy as np, pandas as pd
from hypothesis import given, settings, strategies as st
from scipy import stats
from btcfut.models.data import fold_rows, model_folds
from btcfut.models.evaluate import QUANTILE_LEVELS, quantile_moments

@settings(max_examples=40, deadline=None)
@given(n=st.integers(400, 2000), train=st.integers(100, 300), test=st.integers(10, 100), horizon=st.integers(1, 60),
       every=st.integers(1, 12), val_frac=st.sampled_from([0.0, 0.1, 0.3]), seed=st.integers(0, 10))
def test_no_label_reaches_a_later_slice(n, train, test, horizon, every, val_frac, seed):
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    usable = np.random.default_rng(seed).random(n) > 0.1
    try: folds = model_folds(idx, train, test, horizon)
    except ValueError: return # no fold fits this layout
    for f in folds:
        r = fold_rows(f, usable, horizon, every, val_frac)
        if len(r.fit) and len(r.val): assert r.fit.max() + horizon < r.val.min()
        last = max([r.fit.max() if len(r.fit) else -1, r.val.max() if len(r.val) else -1])
        if len(r.test) and last >= 0: assert last + horizon < r.test.min()
        assert usable[np.concatenate([r.fit, r.val, r.test])].all()

@settings(max_examples=25, deadline=None)
@given(a=st.floats(-6, 6), loc=st.floats(-0.5, 0.5), scale=st.floats(0.01, 1.0))
def test_moments_of_skew_normals(a, loc, scale):
    d = stats.skewnorm(a, loc=loc, scale=scale)
    m, s, k = quantile_moments(d.ppf(QUANTILE_LEVELS))
    assert abs(m - d.mean()) < 0.005 * d.std()
    assert abs(s / d.std() - 1) < 0.01
    assert abs(k - d.stats(moments="s")) < 0.05
