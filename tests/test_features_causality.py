"""Heavier checks of btcfut.features on the bundled real data (the notebook runs lighter versions):
ta equality on all 1h bars, incremental == batch bar by bar over 3,000 bars (1h with funding/OI/premium, 1m with
5m/1h joins), causality property-tested with hypothesis on 1h and 1m bars, and plain OHLCV bars (five columns)."""
import warnings
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from btcfut.core import Config, PRICE_COLUMNS, interval_ms
from btcfut.data.store import DataManager, load_sample
from btcfut.features import FeatureState, build_features


@pytest.fixture(scope="module")
def cfg(): return Config.load()

@pytest.fixture(scope="module")
def h1(): return load_sample("1h")

@pytest.fixture(scope="module")
def m1(cfg): return DataManager(cfg=cfg).load("klines", "BTCUSDT", "1m")


def fake_open_interest(b):
    "Fake 5-minute open-interest snapshots (no open-interest history is bundled)."
    t = pd.date_range(b.index[0], b.index[-1] + pd.Timedelta(hours=1), freq="5min", name="time").as_unit("ms")
    oi = 80_000 + np.cumsum(np.random.default_rng(5).normal(0, 50, len(t)))
    return pd.DataFrame({"sum_open_interest": oi, "sum_open_interest_value": oi * 60_000.0}, index=t)

def fake_premium(b):
    "Fake premium-index klines on the bars' grid (no premium index is bundled)."
    return pd.DataFrame({"close": np.random.default_rng(7).normal(1e-4, 3e-4, len(b))}, index=b.index.copy())

def same(a, b): return np.array_equal(np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64"), equal_nan=True)


def test_equals_ta_on_all_1h_bars(cfg, h1):
    import ta
    b = h1.bars
    f = build_features(b, h1.funding, cfg=cfg)
    c, h, l, v = b["close"], b["high"], b["low"], b["volume"]
    m, bb, a = ta.trend.MACD(c, 26, 12, 9), ta.volatility.BollingerBands(c, 20, 2), ta.trend.ADXIndicator(h, l, c, 14)
    ref = {"rsi_14": (ta.momentum.RSIIndicator(c, 14).rsi(), 13), "roc_12": (ta.momentum.ROCIndicator(c, 12).roc() / 100, 12),
           "macd_12_26": (m.macd(), 25), "macd_signal_12_26_9": (m.macd_signal(), 33), "macd_hist_12_26_9": (m.macd_diff(), 33),
           "bb_mid_20": (bb.bollinger_mavg(), 19), "bb_upper_20_2": (bb.bollinger_hband(), 19),
           "bb_lower_20_2": (bb.bollinger_lband(), 19), "bb_pctb_20_2": (bb.bollinger_pband(), 19),
           "bb_width_20_2": (bb.bollinger_wband() / 100, 19),
           "atr_14": (ta.volatility.AverageTrueRange(h, l, c, 14).average_true_range(), 13),
           "adx_14": (a.adx(), 27), "plus_di_14": (a.adx_pos(), 15), "minus_di_14": (a.adx_neg(), 15),
           "obv": (ta.volume.OnBalanceVolumeIndicator(c, v).on_balance_volume(), 0)}
    for w in (12, 26, 50, 200): ref[f"ema_{w}"] = (ta.trend.EMAIndicator(c, w).ema_indicator(), w - 1)
    for w in (20, 50, 200): ref[f"sma_{w}"] = (ta.trend.SMAIndicator(c, w).sma_indicator(), w - 1)
    worst = {}
    for name, (r, warm) in ref.items():
        x, y = f[name].to_numpy()[warm:], r.to_numpy(dtype="float64")[warm:]
        assert not np.isnan(x).any(), name
        own = {"plus_di_14": 14, "minus_di_14": 14}.get(name, warm) # ta leaves +DI/-DI at 0 one bar longer than needed
        assert np.isnan(f[name].to_numpy()[:own]).all() and not np.isnan(f[name].to_numpy()[own]), f"{name}: warm-up must be NaN"
        worst[name] = float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-12)))
    assert max(worst.values()) <= 1e-9, worst


@pytest.mark.parametrize("which", ["1h", "1m"])
def test_incremental_equals_batch_bar_by_bar(cfg, h1, m1, which):
    if which == "1h":
        b = h1.bars.iloc[-3_600:]
        extra = dict(funding=h1.funding, open_interest=fake_open_interest(b), premium=fake_premium(b))
    else:
        b, extra = m1.iloc[:3_600], {}
    batch = build_features(b, cfg=cfg, **extra)
    s = FeatureState(cfg)
    head = s.run(b.iloc[:600], **extra)
    rows = [s.update(b.iloc[i], **extra) for i in range(600, len(b))]
    live = pd.concat([head, pd.DataFrame(rows, index=b.index[600:])])
    assert list(live.columns) == list(batch.columns)
    bad = [c for c in batch.columns if not same(live[c], batch[c])]
    assert not bad, bad


def perturbed_after(b, fund, oi, prem, cut, seed, remove):
    t_close = b.index[cut] + pd.Timedelta(milliseconds=interval_ms("1m" if (b.index[1] - b.index[0]).seconds == 60 else "1h"))
    if remove:
        return (b.iloc[:cut + 1], None if fund is None else fund[fund.index <= t_close],
                None if oi is None else oi[oi.index <= t_close], None if prem is None else prem.iloc[:cut + 1])
    rng = np.random.default_rng(seed)
    b2 = b.copy(); later = b2.index > b2.index[cut]
    b2.loc[later, PRICE_COLUMNS] = b2.loc[later, PRICE_COLUMNS].mul(rng.uniform(0.5, 2.0, later.sum()), axis=0)
    b2.loc[later, "volume"] *= rng.uniform(0, 3, later.sum())
    f2 = o2 = p2 = None
    if fund is not None:
        f2 = fund.copy(); fl = f2.index > t_close; f2.loc[fl, "funding_rate"] = rng.normal(0, 1e-3, fl.sum())
    if oi is not None:
        o2 = oi.copy(); ol = o2.index > t_close; o2.loc[ol, "sum_open_interest"] *= rng.uniform(0.5, 2, ol.sum())
    if prem is not None:
        p2 = prem.copy(); p2.loc[later, "close"] = rng.normal(0, 1e-3, later.sum())
    return b2, f2, o2, p2


@pytest.mark.parametrize("which", ["1h", "1m"])
def test_causality_property(cfg, h1, m1, which):
    if which == "1h":
        b = h1.bars.iloc[-6_000:] # long enough for the 1d joins to warm up
        fund = h1.funding[h1.funding.index >= b.index[0] - pd.Timedelta(days=10)]
        oi, prem = fake_open_interest(b), fake_premium(b)
    else:
        b, fund, oi, prem = m1.iloc[:4_000], None, None, None
    full = build_features(b, fund, oi, cfg, premium=prem)

    @settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(cut=st.integers(250, len(b) - 2), seed=st.integers(0, 2**31), remove=st.booleans())
    def check(cut, seed, remove):
        b2, f2, o2, p2 = perturbed_after(b, fund, oi, prem, cut, seed, remove)
        out = build_features(b2, f2, o2, cfg, premium=p2)
        x, y = full.iloc[:cut + 1], out.iloc[:cut + 1]
        bad = [c for c in full.columns if not same(x[c], y[c])]
        assert not bad, (cut, remove, bad)
    check()


def test_plain_ohlcv(cfg, h1):
    "Bars with only open/high/low/close/volume: every family but taker, one warning, causal, incremental == batch."
    plain = h1.bars[["open", "high", "low", "close", "volume"]].iloc[-2_000:]
    fund = h1.funding[h1.funding.index >= plain.index[0] - pd.Timedelta(days=10)]
    with pytest.warns(UserWarning, match=r"no 'taker_buy_volume' column: left out the feature families \['taker'\]") as rec:
        full = build_features(plain, fund, cfg=cfg)
    assert len(rec) == 1 and not any(c.startswith("taker_") for c in full.columns) and "rsi_14_4h" in full.columns
    ref = build_features(h1.bars.loc[plain.index], fund, cfg=cfg)
    assert np.array_equal(full.to_numpy(), ref[full.columns].to_numpy(), equal_nan=True)
    cut = 1_500
    later = plain.copy(); later.iloc[cut + 1:, :4] *= 1.5  # prices after `cut` change: nothing at or before it may
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moved = build_features(later, fund, cfg=cfg)
        state = FeatureState(cfg); head = state.run(plain.iloc[:cut], fund)
    assert np.array_equal(full.iloc[:cut + 1].to_numpy(), moved.iloc[:cut + 1].to_numpy(), equal_nan=True)
    rows = pd.DataFrame([state.update(plain.iloc[i], fund) for i in range(cut, len(plain))], index=plain.index[cut:])
    assert np.array_equal(pd.concat([head, rows]).to_numpy(), full.to_numpy(), equal_nan=True)
