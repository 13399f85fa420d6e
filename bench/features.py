"""Benchmark: the full btcfut feature set on one year of 1m bars vs the same indicators computed with `ta` 0.11.

Data: one year = 525,600 one-minute bars made from the bundled REAL 1m klines (82,586 minutes in two contiguous
stretches, 2023-07/08 and 2025-05): the stretches are repeated in turn until 525,600 rows, each copy's prices
rescaled (one factor per copy) so that it opens at the previous copy's last close, and the rows re-stamped on a
gap-free 1m grid from 2024-01-01 00:00 UTC. Every bar's shape (OHLC relative to its open, volume) is a real minute.

Timings: btcfut's functions are run once first (numba compiles/loads its cache), then the best of `--repeat` runs
is reported (wall clock, and CPU time of this process, which other jobs on a shared machine disturb less); `ta` is
run once (it takes many seconds). Both in this process, on this machine; `load_avg_1m` says how busy it was.
The JSON last line: rows, btcfut_full_s (every family + 5m and 1h multi-timeframe features), btcfut_ta_subset_s
(only the indicators ta also computes, no multi-timeframe), ta_s, and the ratios ta_s / btcfut_*_s.

Run: `.venv/bin/python bench/features.py [--rows 525600] [--repeat 3]`
"""
import argparse, json, os, platform, time
import numpy as np, pandas as pd

from btcfut.core import Config
from btcfut.data.store import DataManager
from btcfut.features import build_features

TA_FAMILIES = ["roc", "rsi", "macd", "bollinger", "atr", "adx", "ema", "sma", "obv"]

def year_of_minutes(n:int=525_600) -> pd.DataFrame:
    "n one-minute bars tiled from the real bundled 1m klines (see the module docstring)."
    real = DataManager().load("klines", "BTCUSDT", "1m")
    t = real.index.as_unit("ms").asi8
    segments = np.split(np.arange(len(real)), np.flatnonzero(np.diff(t) != 60_000) + 1)
    px = ["open", "high", "low", "close"]
    parts, total, k, last_close = [], 0, 0, None
    while total < n:
        seg = real.iloc[segments[k % len(segments)]].copy(); k += 1
        if last_close is not None: seg[px] = seg[px] * (last_close / seg["open"].iloc[0])
        seg = seg.iloc[: n - total]
        parts.append(seg); total += len(seg); last_close = float(seg["close"].iloc[-1])
    out = pd.concat(parts)
    start = pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000
    out.index = pd.DatetimeIndex(pd.to_datetime(start + 60_000 * np.arange(n), unit="ms", utc=True), name="time").as_unit("ms")
    return out

def ta_indicators(bars:pd.DataFrame, cfg:Config) -> dict:
    "The indicators btcfut matches, computed with ta at the configured windows."
    import ta
    f = cfg.features
    c, h, l, v = bars["close"], bars["high"], bars["low"], bars["volume"]
    out = {}
    for w in f.roc_windows: out[f"roc_{w}"] = ta.momentum.ROCIndicator(c, w).roc()
    for w in f.rsi_windows: out[f"rsi_{w}"] = ta.momentum.RSIIndicator(c, w).rsi()
    m = ta.trend.MACD(c, f.macd_slow, f.macd_fast, f.macd_signal)
    out["macd"], out["macd_signal"], out["macd_hist"] = m.macd(), m.macd_signal(), m.macd_diff()
    b = ta.volatility.BollingerBands(c, f.bollinger_window, f.bollinger_std)
    out["bb"] = [b.bollinger_mavg(), b.bollinger_hband(), b.bollinger_lband(), b.bollinger_pband(), b.bollinger_wband()]
    for w in f.atr_windows: out[f"atr_{w}"] = ta.volatility.AverageTrueRange(h, l, c, w).average_true_range()
    for w in f.adx_windows:
        a = ta.trend.ADXIndicator(h, l, c, w)
        out[f"adx_{w}"] = [a.adx(), a.adx_pos(), a.adx_neg()]
    for w in f.ema_windows: out[f"ema_{w}"] = ta.trend.EMAIndicator(c, w).ema_indicator()
    for w in f.sma_windows: out[f"sma_{w}"] = ta.trend.SMAIndicator(c, w).sma_indicator()
    out["obv"] = ta.volume.OnBalanceVolumeIndicator(c, v).on_balance_volume()
    return out

def best_of(fn, repeat:int) -> tuple[float, float, object]:
    "Best wall-clock and best CPU seconds over `repeat` runs, and the last result."
    wall, cpu, res = float("inf"), float("inf"), None
    for _ in range(repeat):
        res = None # let the previous result go before the next run
        t, c = time.perf_counter(), time.process_time()
        res = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, res

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=525_600)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bars = year_of_minutes(args.rows)
    cfg = Config.load(overrides={"features.mtf.1m": ["5m", "1h"]})
    sub = Config.load(overrides={"features.set": TA_FAMILIES, "features.mtf.1m": []})
    build_features(bars.iloc[:5000], cfg=cfg); build_features(bars.iloc[:5000], cfg=sub) # compile / load numba's cache
    full_s, full_cpu, feats = best_of(lambda: build_features(bars, cfg=cfg, interval="1m"), args.repeat)
    sub_s, sub_cpu, subf = best_of(lambda: build_features(bars, cfg=sub, interval="1m"), args.repeat)
    t, c = time.perf_counter(), time.process_time(); ta_indicators(bars, cfg)
    ta_s, ta_cpu = time.perf_counter() - t, time.process_time() - c
    res = {"rows": len(bars), "columns_full": feats.shape[1], "columns_ta_subset": subf.shape[1],
           "btcfut_full_s": round(full_s, 4), "btcfut_ta_subset_s": round(sub_s, 4), "ta_s": round(ta_s, 3),
           "ratio_ta_over_full": round(ta_s / full_s, 1), "ratio_ta_over_subset": round(ta_s / sub_s, 1),
           "cpu_s": {"btcfut_full": round(full_cpu, 4), "btcfut_ta_subset": round(sub_cpu, 4), "ta": round(ta_cpu, 3)},
           "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
           "data": "real 1m klines tiled to 525,600 rows (see docstring)"}
    print(f"btcfut full feature set: {full_s:.3f} s ({feats.shape[1]} columns); ta-equivalent subset: {sub_s:.3f} s; ta: {ta_s:.2f} s")
    print(json.dumps(res))

if __name__ == "__main__": main()
