"""Benchmark and out-of-sample evaluation of the long-horizon forecaster (btcfut.models.long) on the bundled 1h data.

Default run: the config's `models.long` settings (168-bar window, 30-day label, 49 quantiles); features of all bundled
1h bars; the forecaster is trained on the first walk-forward fold (training seconds = `long_train_s_per_fold`, wall
clock, CPU, `threads` torch threads), then one forecast through the serving path `LongForecaster.forecast` (window
checks, scaling, bare `forward`, moments) is timed warm: median of `--repeat` calls after 3 warm-up calls
(`long_forecast_ms`); `long_forward_ms` is the network's `forward` alone on the same window; `long_forecast_pf_ms` is the same window
through pytorch-forecasting's own path (a one-window `TimeSeriesDataSet`, its dataloader and `net.predict`, which
runs a lightning Trainer), median of 5 calls after 2 warm-up calls: the reason serving uses the bare module. `long_params` is the
parameter count. The machine is shared: `load_avg_1m` says how busy it was.

`--evaluate`: the whole walk-forward evaluation (every fold from `models.long.start`, retrained per fold) of the
forecaster and the three baselines; prints the score table, the Diebold-Mariano/bootstrap comparison against the TFT,
and writes the JSON to `--json`.

The JSON last line carries the figures. Run: `.venv/bin/python bench/models.py [--repeat 50] [--evaluate --json FILE]`
"""
import argparse, json, os, time
import numpy as np, pandas as pd

from btcfut.core import Config
from btcfut.data.store import load_sample
from btcfut.features import build_features
from btcfut.models.data import WindowDataset, fold_rows, forward_log_return, model_folds, select_features
from btcfut.models.long import LongConfig, LongForecaster, tft_inputs, walk_forward_long

def pf_forecast_s(m, obs, known) -> float:
    "Seconds for one forecast of the window through pytorch-forecasting's TimeSeriesDataSet + dataloader + predict."
    import logging, warnings
    from pytorch_forecasting import TimeSeriesDataSet
    from btcfut.models.data import KNOWN_COLUMNS
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR); warnings.filterwarnings("ignore")
    L = m.lc.lookback
    t0 = time.perf_counter()
    df = pd.DataFrame(np.concatenate([np.concatenate([obs[0], np.zeros((1, obs.shape[2]), np.float32)]), known[0]], axis=1), columns=m.columns + KNOWN_COLUMNS)
    df["time_idx"], df["group"], df["y"] = np.arange(L + 1), "BTCUSDT", np.float32(0)
    ds = TimeSeriesDataSet(df, time_idx="time_idx", target="y", group_ids=["group"], max_encoder_length=L, min_encoder_length=L,
                           max_prediction_length=1, time_varying_unknown_reals=m.columns, time_varying_known_reals=KNOWN_COLUMNS,
                           target_normalizer=None, scalers={c: None for c in m.columns + KNOWN_COLUMNS}, predict_mode=True, add_target_scales=False)
    m.net.predict(ds.to_dataloader(train=False, batch_size=1, num_workers=0), mode="quantiles",
                  trainer_kwargs=dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False))
    return time.perf_counter() - t0

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--evaluate", action="store_true", help="run the full walk-forward evaluation")
    ap.add_argument("--max-folds", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the evaluation JSON here")
    a = ap.parse_args()
    lc = LongConfig.from_config(Config.load())
    s = load_sample("1h")
    feats = build_features(s.bars, s.funding)
    if a.evaluate:
        t0 = time.perf_counter()
        ev = walk_forward_long(feats, s.bars.close, lc, max_folds=a.max_folds)
        res = ev.to_dict() | {"wall_s": time.perf_counter() - t0, "load_avg_1m": os.getloadavg()[0], "settings": {k: v for k, v in vars(lc).items()}}
        pd.set_option("display.width", 200)
        print(ev.table()[["n", "pinball", "crps", "cov10", "cov50", "cov90", "cov80"]].to_string())
        print(ev.comparison().to_string())
        if a.json: open(a.json, "w").write(json.dumps(res, indent=1, default=str))
        print(json.dumps({"long_eval_folds": len(ev.train_s), "long_eval_n": len(ev.labels), "long_train_s_per_fold": res["train_s_per_fold"],
                          "long_params": ev.n_params, "wall_s": round(res["wall_s"], 1)}))
        return
    f = model_folds(feats.index, lc.train, lc.test, lc.horizon, embargo=lc.embargo, start=lc.start)[0]
    labels = forward_log_return(s.bars.close, lc.horizon)
    cols = select_features(feats.iloc[f.train], lc.max_missing)
    ds = WindowDataset(feats, labels, cols, lc.lookback)
    rows = fold_rows(f, ds.usable(), lc.horizon, lc.every, lc.val_frac, lc.test_every)
    t0 = time.perf_counter(); m = LongForecaster(lc, cols).fit(ds, rows); train_s = time.perf_counter() - t0
    frame = feats.iloc[: rows.test[0] + 1]
    for _ in range(3): m.forecast(frame)
    ts = []
    for _ in range(a.repeat):
        t0 = time.perf_counter(); m.forecast(frame); ts.append(time.perf_counter() - t0)
    import torch
    obs, known = m.window_arrays(frame); x = tft_inputs(obs, known); m.net.eval(); fw = []
    with torch.no_grad():
        for _ in range(a.repeat):
            t0 = time.perf_counter(); m.net(x); fw.append(time.perf_counter() - t0)
    pf = [pf_forecast_s(m, obs, known) for _ in range(7)][2:]
    print(json.dumps({"long_forecast_pf_ms": round(1000 * float(np.median(pf)), 1), "long_forecast_ms": round(1000 * float(np.median(ts)), 2), "long_forward_ms": round(1000 * float(np.median(fw)), 2),
                      "long_train_s_per_fold": round(train_s, 1), "long_params": m.n_params, "epochs": len(m.history),
                      "fit_rows": len(rows.fit), "val_rows": len(rows.val), "features": len(cols), "threads": lc.threads,
                      "load_avg_1m": os.getloadavg()[0]}))

if __name__ == "__main__": main()
