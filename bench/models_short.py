"""Benchmark: the short signal model (btcfut.models.short / .serve) on the bundled REAL 1m bars.

Default run (a few minutes): trains the configured model (config `models.short`) on the last walk-forward fold of
the 2025-01/02 stretch, then on that fold's test windows measures
- one-window latency of `ShortPredictor.predict` (input checks + scaling + network + calibration), float torch,
  int8 dynamic quantization and ONNX Runtime, each on ONE thread: p50 / p99 over `--calls` calls after a warm-up;
- batched throughput (all test windows of the fold in one call), windows per second;
- sizes: serialized state dict (float, int8), ONNX graph, model directory on disk;
- every metric of the float, int8 and ONNX runtimes on the same windows, their argmax agreement with float (all
  windows, and the float model's most confident decile) and the agreement of the traded signal (-1/0/+1).
Latency is reported as wall clock (`short_p50_ms`, ...) and as this process's CPU time (`short_p50_cpu_ms`, ...):
on a busy shared machine the wall clock includes time spent waiting for a core.
With `--eval`: also the full walk-forward evaluation (every fold of the three stretches: transformer, majority,
logistic regression, LightGBM; metrics per fold and overall) and the after-cost backtest of each model's
confidence-filtered signal (taker, maker, no costs) beside doing nothing. Slow: tens of minutes on two shared cores.
The machine is shared: `load_avg_1m` says how busy it was.

Run: `.venv/bin/python bench/models_short.py [--eval] [--calls 1000] [--out DIR]`
The JSON last line holds short_p50_ms, short_p99_ms (float), short_p99_ms_quantized, short_p99_ms_onnx,
short_batch_windows_per_s (float; *_quantized, *_onnx too), model sizes, metrics per runtime and, with --eval,
the evaluation and backtest tables.
"""
import argparse, json, os, platform, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd, torch

from btcfut.data.store import load_sample
from btcfut.models.short import (ShortParams, short_features, short_labels, short_data, short_folds, train_short,
                                 classification_metrics, evaluate_short, backtest_signals, reliability_plot)
from btcfut.models.serve import ShortPredictor, quantize_short, onnx_short, model_bytes
from btcfut.backtest import BacktestEngine

def latency(pred:ShortPredictor, frame:pd.DataFrame, calls:int) -> dict:
    "p50, p99 (ms) of one-window `predict` calls, wall clock and this process's CPU time, on 200-row tails."
    n = len(frame); wall, cpu = [], []
    for i in range(calls + 20):
        sub = frame.iloc[n - 200 - (i % 100): n - (i % 100)]
        t, c = time.perf_counter(), time.process_time(); r = pred.predict(sub)
        dt, dc = (time.perf_counter() - t)*1e3, (time.process_time() - c)*1e3
        assert r.source == "model", r.fallbacks
        if i >= 20: wall.append(dt); cpu.append(dc)
    pc = lambda a, q: round(float(np.percentile(a, q)), 3)
    return {"p50": pc(wall, 50), "p99": pc(wall, 99), "p50_cpu": pc(cpu, 50), "p99_cpu": pc(cpu, 99)}

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--eval", action="store_true"); ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="directory for the trained model, the reliability plot and the tables (with --eval)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = load_sample("1m"); P = ShortParams.from_config()
    feats = short_features(s.bars, s.funding)
    data = short_data(feats, short_labels(s.bars.close, P.horizon, P.k, P.vol_window), P)
    folds = short_folds(data, P)
    f = [x for x in folds if x.stretch == 1][-1]
    t0 = time.perf_counter(); model = train_short(data, f.fit, f.val, P); train_s = time.perf_counter() - t0
    res = {"fold": repr(f), "train_s": round(train_s, 1), "n_features": len(model.features),
           "params": int(sum(p.numel() for p in model.net.parameters()))}
    runtimes = {"float": model, "int8": quantize_short(model), "onnx": onnx_short(model)}
    y = data.y[f.test].astype(int); p_float = model.predict_proba(data, f.test); sig = {}
    with tempfile.TemporaryDirectory() as td:
        model.save(Path(td)/"m"); res["model_dir_bytes"] = sum(p.stat().st_size for p in (Path(td)/"m").iterdir())
        for name, rt in (("float", "torch"), ("int8", "int8"), ("onnx", "onnx")):
            pred = ShortPredictor(Path(td)/"m", runtime=rt, deadline_ms=1e9)
            suffix = {"float": "", "int8": "_quantized", "onnx": "_onnx"}[name]
            lat = latency(pred, feats.loc[:f.test_times[1]], args.calls)
            t = time.perf_counter(); rb = pred.predict(feats, times=data.index[f.test]); bs = time.perf_counter() - t
            for k, v in lat.items(): res[f"short_{k.replace('_cpu', '')}_{'cpu_' if 'cpu' in k else ''}ms{suffix}"] = v
            sig[name] = rb.signal
            res[f"short_batch_windows_per_s{suffix}"] = round(len(f.test)/bs, 1)
            pr = runtimes[name].predict_proba(data, f.test)
            res[f"metrics_{name}"] = {k: round(v, 5) for k, v in classification_metrics(pr, y).items()}
            res[f"argmax_agreement_{name}_vs_float"] = round(float((pr.argmax(1) == p_float.argmax(1)).mean()), 5)
            res[f"max_abs_dprob_{name}_vs_float"] = round(float(np.abs(pr - p_float).max()), 5)
            res[f"signal_agreement_{name}_vs_float"] = round(float((sig[name] == sig["float"]).mean()), 5)
            conf = p_float.max(1); top = conf >= np.quantile(conf, 0.9)
            res[f"argmax_agreement_top_decile_{name}_vs_float"] = round(float((pr.argmax(1) == p_float.argmax(1))[top].mean()), 5)
        if args.out: args.out.mkdir(parents=True, exist_ok=True); model.save(args.out/"short_model")
    res["model_bytes_float"], res["model_bytes_int8"] = model_bytes(runtimes["float"]), model_bytes(runtimes["int8"])
    res["model_bytes_onnx"] = len(runtimes["onnx"].net.onnx_bytes)
    print(json.dumps({k: v for k, v in res.items() if not k.startswith("metrics")}, indent=1))
    if args.eval:
        t0 = time.perf_counter(); ev = evaluate_short(data, folds, P); res["eval_s"] = round(time.perf_counter() - t0, 1)
        overall = ev.metrics.xs("all").round(4); per_fold = ev.metrics.round(4)
        bt = backtest_signals(ev, s.bars, s.funding, P, BacktestEngine).round(2)
        print(per_fold.to_string()); print(overall.to_string()); print(bt.to_string())
        res["eval_overall"] = overall.to_dict(orient="index")
        res["eval_per_fold"] = {f"{k}|{m}": v for (k, m), v in per_fold.to_dict(orient="index").items()}
        res["backtest"] = {f"{c}|{m}": v for (c, m), v in bt.to_dict(orient="index").items()}
        res["n_folds"] = len(folds)
        if args.out:
            import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
            args.out.mkdir(parents=True, exist_ok=True); ax = None
            for n, g in ev.predictions.groupby("model", sort=False):
                ax = reliability_plot(g[["p_down", "p_neutral", "p_up"]].to_numpy(), g.label.to_numpy(), n, ax)
            plt.savefig(args.out/"short_reliability.png", dpi=100, bbox_inches="tight")
            per_fold.to_csv(args.out/"short_metrics.csv"); bt.to_csv(args.out/"short_backtest.csv")
    res.update({"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2),
                "python": platform.python_version(), "torch": torch.__version__})
    print(json.dumps(res, default=str))

if __name__ == "__main__": main()
