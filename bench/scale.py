"""Benchmark: walk-forward with per-fold retraining, serial against a Dask LocalCluster, with identical results.

Data: the bundled BTCUSDT 1h bars (`load_sample("1h")`) from 2021 on. Features (causal): log returns over 1, 4, 24 and
72 bars, the 24-bar range and volume z-score, scaled per fold by `btcfut.models.data.FeatureScaler` fitted on the
training rows. Label: `btcfut.models.data.forward_log_return` over 4 bars. Each fold retrains the LightGBM quantile
baseline of the models chapter (`btcfut.models.baselines.LGBMQuantileBaseline`, small: levels 0.1/0.5/0.9, 60 trees,
one thread, deterministic) on a small grid (`num_leaves` × `learning_rate`, `btcfut.walkforward.sweep`), each
configuration scored by its pinball loss on the last 20% of the fold's training window (a 4-bar gap); the best is
refitted on the whole window and signals the test window (±1 x equity on the sign of the predicted median).
Folds: 180-day training windows, 60-day tests, a 4-bar purge. One backtest over the stitched target
(`BacktestEngine.run`, bundled mark price and funding).

Serial: `run_walk_forward(..., cluster=None)`; Dask: `cluster=N` (a new LocalCluster of N processes, its start-up
included) and the same on an already running cluster (start-up excluded). Results compared exactly: stitched target,
chosen configurations and every trial score.

Prints progress to stderr and one JSON object as the last line of stdout (serial_s, cluster_s, speedup, identical).
Run: `.venv/bin/python bench/scale.py [--workers 2] [--scheduler tcp://host:8786] [--quick]`.
"""
from __future__ import annotations
import argparse, functools, json, os, sys, time, warnings
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from btcfut.core import Config
from btcfut.data.store import load_sample
from btcfut.models.baselines import LGBMQuantileBaseline
from btcfut.models.data import FeatureScaler, forward_log_return
from btcfut.models.evaluate import pinball
from btcfut.walkforward import run_walk_forward, sweep, walk_forward_folds

def log(*a): print(*a, file=sys.stderr, flush=True)

FEATURES = ["r1", "r4", "r24", "r72", "range24", "vz24"]
HORIZON = 4 # bars of the label
LEVELS = (0.1, 0.5, 0.9)

def features(bars:pd.DataFrame) -> pd.DataFrame:
    "Causal features and the 4-bar forward log return (NaN at the end)."
    lc = np.log(bars["close"])
    f = pd.DataFrame({f"r{k}": lc.diff(k) for k in (1, 4, 24, 72)}, index=bars.index)
    f["range24"] = (bars["high"].rolling(24).max() - bars["low"].rolling(24).min())/bars["close"]
    v = bars["volume"]; f["vz24"] = (v - v.rolling(24).mean())/v.rolling(24).std()
    f = f.fillna(0.0)
    f["label"] = forward_log_return(bars["close"], HORIZON)
    return f

def fit(cfg:dict, train:pd.DataFrame) -> dict:
    "The scaler and the quantile baseline fitted on `train` (its last 4 labels reach past the window: dropped)."
    rows = train.iloc[:-HORIZON].dropna(subset=["label"])
    sc = FeatureScaler.fit(rows[FEATURES])
    m = LGBMQuantileBaseline(levels=LEVELS, n_estimators=cfg.get("n_estimators", 60), learning_rate=cfg["learning_rate"],
                             num_leaves=cfg["num_leaves"], min_child_samples=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"scaler": sc, "model": m.fit(sc.transform(rows), rows["label"].to_numpy())}

def score(cfg:dict, train:pd.DataFrame) -> float:
    "Minus the mean pinball loss on the last 20% of the training window of a model fitted on the first 80% (a 4-bar gap)."
    cut = int(len(train)*0.8)
    f = fit(cfg, train.iloc[:cut])
    val = train.iloc[cut + HORIZON:-HORIZON]
    q = f["model"].predict(f["scaler"].transform(val), val.index, levels=np.array(LEVELS)).values
    return -float(pinball(val["label"].to_numpy(), q, np.array(LEVELS)).mean())

def retrain(fold, train:pd.DataFrame, grid:dict) -> dict:
    best = sweep(grid, functools.partial(score, train=train))
    return best.__class__(best.best | fit(best.best, train), best.best_score, best.scores)

def signal(model:dict, hist:pd.DataFrame) -> pd.Series:
    q = model["model"].predict(model["scaler"].transform(hist), hist.index, levels=np.array(LEVELS)).values
    return pd.Series(np.where(q[:, 1] > 0, 1.0, -1.0), hist.index, name="target")

def comparable(wf):
    "What must be identical between runs: the target, the chosen configurations and every trial score."
    return wf.target, [{k: v for k, v in m.items() if k not in ("model", "scaler")} for m in wf.models], wf.trials

def identical(a, b) -> bool:
    ta, ma, sa = comparable(a); tb, mb, sb = comparable(b)
    return bool(ta.equals(tb) and ma == mb and sa.equals(sb))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    ap.add_argument("--scheduler", default=None, help="an existing Dask scheduler address (instead of a LocalCluster)")
    ap.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    a = ap.parse_args()
    s = load_sample("1h", start="2023-06-01" if a.quick else "2021-01-01")
    frame = features(s.bars)
    grid = {"num_leaves": [7, 15], "learning_rate": [0.05, 0.1]}
    folds = walk_forward_folds(frame.index, train="180D", test="60D", purge=HORIZON)
    if a.quick: folds = folds[:3]
    log(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {len(folds)} folds x {len(grid['num_leaves'])*len(grid['learning_rate'])} configurations on {len(frame):,} 1h bars")
    run = lambda cluster: run_walk_forward(frame, folds, functools.partial(retrain, grid=grid), signal, progress=False, cluster=cluster)
    t0 = time.perf_counter(); serial = run(None); serial_s = time.perf_counter() - t0
    log(f"serial: {serial_s:.2f} s")
    where = a.scheduler or a.workers
    t0 = time.perf_counter(); dask = run(where); dask_s = time.perf_counter() - t0
    log(f"dask ({where}): {dask_s:.2f} s, start-up included; identical: {identical(serial, dask)}")
    warm_s = None
    if a.scheduler is None:
        from dask.distributed import LocalCluster
        with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=":0") as lc:
            t0 = time.perf_counter(); warm = run(lc.scheduler_address); warm_s = time.perf_counter() - t0
        log(f"dask on a running {a.workers}-worker cluster: {warm_s:.2f} s; identical: {identical(serial, warm)}")
    from btcfut.backtest import BacktestEngine
    bars = s.bars.loc[serial.target.index]
    res = BacktestEngine(Config.load()).run(bars, serial.target, mark=s.mark.reindex(bars.index) if s.mark is not None else None,
                                            funding=s.funding)
    out = {"bench": "scale", "n_bars": len(frame), "n_folds": len(folds), "grid": grid,
           "data": "bundled BTCUSDT 1h bars (load_sample)", "model": "btcfut.models.baselines.LGBMQuantileBaseline (levels 0.1/0.5/0.9, 60 trees, one thread, deterministic) per fold; grid scored by pinball loss on the last 20% of each training window",
           "where": str(where), "cpu_count": os.cpu_count(), "load_avg_after": round(os.getloadavg()[0], 2),
           "serial_s": round(serial_s, 2), "cluster_s": round(dask_s, 2), "speedup": round(serial_s/dask_s, 2),
           "dask_running_cluster_s": None if warm_s is None else round(warm_s, 2),
           "speedup_running_cluster": None if warm_s is None else round(serial_s/warm_s, 2),
           "identical": identical(serial, dask) and (warm_s is None or identical(serial, warm)),
           "oos_final_equity": round(res.totals["final_equity"], 2), "oos_trades": res.totals["n_trades"]}
    print(json.dumps(out))

if __name__ == "__main__":
    main()
