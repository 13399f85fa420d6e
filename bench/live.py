"""Benchmark: the live loop end to end over loopback, from a closed kline arriving on the websocket to the order
reaching the exchange, and the process's memory growth over a long replay.

The loopback fake exchange serves the bundled real BTCUSDT 1m bars and replays them through its websocket at `--speed`
data seconds per second (one contiguous stretch: 2023-07-19 .. 2023-08-16). The loop (`btcfut.live.replay_session`)
decides every closed bar: incremental features, the signal (the fallback rule, or `--model DIR`: a short model with its baseline;
with `--long-model DIR` too, the long model's hourly view timed by the short model, forecast off the decision path), sizing, risk, and a
MARKET order sent to the fake over REST through `BinanceExecutor` (testnet mode, the fake's keys) whenever the target
changes. Latency per order: from the kline message's arrival (read off the socket) to the fake's answer to the order
(so it includes the REST round trip of the account read and of the order itself). RSS is sampled every
`--sample` bars and at the last decision; `rss_growth_mb` = RSS at the last decision minus RSS at the first sample
after max(`--sample`, `live.max_decisions`) bars (`rss_growth_from_bar`: past the warm-up's allocations, the first JIT
compilations and the filling of the loop's bounded queue of decisions); `rss_samples_mb` lists every (bar, MB) from the first. Latencies of every decision are kept in arrays allocated
before the replay (the loop itself keeps only the last `live.max_decisions`). The journal is a SQLite file in a temporary directory (`--memory-journal`: in memory, where it grows with
every row). The fake exchange runs in the same process and keeps every order and fill it saw, as an exchange does.

`slowest_decisions` and `slowest_orders` are (bar, the bar's minute in its hour, ms): the
minute tells the decisions near an hour's close, when the long worker forecasts; `gc` counts the garbage collector's
collections per generation during the replay (warm-up included) and the longest pause of each; `over_5ms` lists
(generation, decisions made by then, ms) of each pause over 5 ms.
Prints progress to stderr and one JSON object as the last line of stdout.
With `--breakdown`: where each decision's time goes, per stage (mean and p50 in ms over the decisions that sent an
order, and over all): `wait` (from the kline's arrival to the decision starting on the exchange thread: the queue,
the thread hand-over, a funding fetch), `features` (the streaming feature update), `signal` (the window frame and the
predictor), `account` (position and balance reads), `risk`, `order` (checks, journal rows before and after, the REST
order), then `record` (the decision's journal row and metrics, after the latency is taken) and `reconcile`; nested
calls (journal writes, each REST call) are listed as `stage/call`. The timers cost a little and keep one record per
decision, so the RSS figures of a `--breakdown` run are not the bench's.
Run: `.venv/bin/python bench/live.py` (a day, about a minute); `--days 7` for a replayed week; `--paper` for orders
to an in-process paper account instead of the fake.
"""
from __future__ import annotations
import argparse, asyncio, gc, json, logging, math, os, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from btcfut.core import Config
from btcfut.execution.journal import Journal
from btcfut.fakex import replay_fake
from btcfut.live import replay_session, short_predictor, warm_bars_for, warm_hours_for
from btcfut.models.serve import LongPredictor

def log(*a): print(*a, file=sys.stderr, flush=True)

def rss_mb() -> float:
    "Resident set size of this process, MB (from /proc)."
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return float("nan")

class Breakdown:
    "Per-decision stage timers, installed on the classes the loop uses (a bench-only instrument)."
    def __init__(self):
        self.stack, self.cur, self.records, self.arrived = [], None, [], None
    def wrap(self, cls, name, label):
        f = getattr(cls, name); bd = self
        def timed(*x, **k):
            if bd.cur is None: return f(*x, **k) # outside a decision (warm-up, user events)
            key = f"{bd.stack[-1]}/{label}" if bd.stack else label
            bd.stack.append(label); t = time.perf_counter()
            try: return f(*x, **k)
            finally: bd.stack.pop(); bd.cur[key] = bd.cur.get(key, 0.0) + (time.perf_counter() - t) * 1e3
        setattr(cls, name, timed)
    def install(self, paper:bool):
        from btcfut.live import LiveLoop
        from btcfut.features import FeatureState
        from btcfut.execution.journal import Journal
        from btcfut.models.serve import ShortPredictor
        ex = __import__("btcfut.execution.paper" if paper else "btcfut.execution.binance", fromlist=["x"])
        ex = ex.PaperExecutor if paper else ex.BinanceExecutor
        on_bar, bd = LiveLoop.on_bar, self
        def timed_bar(lp, bar, arrived=None):
            t = time.perf_counter(); bd.cur, bd.stack = {"wait": (t - arrived) * 1e3 if arrived is not None else 0.0}, []
            try: return on_bar(lp, bar, arrived)
            finally:
                bd.cur["on_bar"] = (time.perf_counter() - t) * 1e3; bd.records.append(bd.cur); bd.cur = None
        LiveLoop.on_bar = timed_bar
        for cls, name, label in [(FeatureState, "update", "features"), (LiveLoop, "_signal", "signal"),
                                 (ShortPredictor, "predict", "predict"), (ex, "position", "account"), (ex, "balance", "account"), (ex, "account", "account"),
                                 (LiveLoop, "_target", "risk"), (LiveLoop, "_send", "order"), (LiveLoop, "_record", "record"),
                                 (LiveLoop, "_reconcile", "reconcile"), (Journal, "append", "journal.append"),
                                 (Journal, "rows", "journal.rows")] + ([(ex, "on_bar", "paper.on_bar")] if paper else []):
            self.wrap(cls, name, label)
        if not paper:
            call = ex._call
            def timed_call(x, fn, **params):
                if bd.cur is None: return call(x, fn, **params)
                key = f"{bd.stack[-1]}/rest.{fn}" if bd.stack else f"rest.{fn}"; t = time.perf_counter()
                try: return call(x, fn, **params)
                finally: bd.cur[key] = bd.cur.get(key, 0.0) + (time.perf_counter() - t) * 1e3
            ex._call = timed_call
    def table(self, ordered:np.ndarray) -> dict:
        "Stage -> {mean, p50} ms over the decisions that ordered and over all; `other` = on_bar less its stages."
        recs = self.records[:len(ordered)]
        keys = sorted({k for r in recs for k in r}, key=lambda k: (k.split("/")[0], k))
        def stats(rs):
            if not rs: return {}
            out = {}
            for k in keys:
                v = np.array([r.get(k, 0.0) for r in rs])
                out[k] = {"mean": round(float(v.mean()), 3), "p50": round(float(np.median(v)), 3)}
            top = np.array([r["on_bar"] - sum(v for k, v in r.items() if "/" not in k and k not in ("on_bar", "wait")) for r in rs])
            out["other"] = {"mean": round(float(top.mean()), 3), "p50": round(float(np.median(top)), 3)}
            return out
        return {"orders": stats([r for r, o in zip(recs, ordered) if o]), "all": stats(recs)}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2023-07-20 00:00", help="first live bar, UTC")
    ap.add_argument("--days", type=float, default=1.0, help="days of 1m bars replayed")
    ap.add_argument("--speed", type=float, default=3000.0, help="data seconds per wall second")
    ap.add_argument("--sample", type=int, default=500, help="bars between RSS samples")
    ap.add_argument("--paper", action="store_true", help="orders to a paper account instead of the fake over REST")
    ap.add_argument("--model", default=None, help="model directory with short/ and baseline/ (`btcfut train short`); default: the fallback rule")
    ap.add_argument("--long-model", default=None, help="long model directory (`btcfut train long`): the long view timed by the short model (with --model)")
    ap.add_argument("--breakdown", action="store_true", help="time each decision's stages (see the module's text)")
    ap.add_argument("--memory-journal", action="store_true", help="journal in memory (it then grows in RSS) instead of a file in a temporary directory")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)d %(name)s %(message)s")
    start = pd.Timestamp(a.start, tz="UTC"); end = start + pd.Timedelta(days=a.days)
    rss, n, cpu0 = [], [0], [math.nan]
    size = int((end - start) / pd.Timedelta(minutes=1)) + 1
    lat_all, ordered = np.full(size, np.nan), np.zeros(size, bool) # allocated up front: the bench itself does not grow
    def on_decision(d):
        lat_all[n[0]], ordered[n[0]] = d.latency_ms, bool(d.order_qty)
        n[0] += 1
        if n[0] == 1: cpu0[0] = time.process_time()
        if n[0] % a.sample == 0 or n[0] == size - 1: # and at the last decision, before the session closes
            rss.append((n[0], rss_mb())); log(f"{n[0]} bars, rss {rss[-1][1]:.1f} MB, {time.perf_counter() - t0:.1f} s")
    gcs, gc_t, gc_slow = np.zeros((3, 2)), [0.0], [] # per generation: collections, longest pause ms (during the replay)
    def on_gc(phase, info):
        if phase == "start": gc_t[0] = time.perf_counter(); return
        g, ms = info["generation"], (time.perf_counter() - gc_t[0]) * 1e3; gcs[g, 0] += 1; gcs[g, 1] = max(gcs[g, 1], ms)
        if ms > 5 and len(gc_slow) < 100: gc_slow.append((g, n[0], round(ms, 1))) # (generation, decisions made by then, ms)
    gc.callbacks.append(on_gc)
    bd = Breakdown() if a.breakdown else None
    if bd is not None: bd.install(a.paper)
    t0 = time.perf_counter()
    cfg = Config.load()
    tmp = tempfile.TemporaryDirectory()
    journal = Journal("sqlite://" if a.memory_journal else f"sqlite:///{tmp.name}/journal.sqlite", cfg=cfg)
    warm = 300 if a.model is None else warm_bars_for(short_predictor(a.model), cfg) # bars the fake serves before the start
    long = None if a.long_model is None else LongPredictor(a.long_model)
    hours = 0 if long is None else warm_hours_for(long, cfg) # the long model's 1h bars served before the start
    lp = asyncio.run(replay_session(replay_fake(start, end, a.speed, cfg, warm=warm, warm_hours=hours), start, end, a.speed, cfg, journal=journal,
                                    exchange=not a.paper, on_decision=on_decision, model_dir=a.model, long_model=long))
    wall = time.perf_counter() - t0
    base = next(((k, x) for k, x in rss if k >= max(a.sample, int(cfg.live.max_decisions))), None) # the loop's bounded queues full by then
    all_lat = lat_all[:n[0]]; lat = all_lat[ordered[:n[0]]]
    pct = lambda x, q: round(float(np.percentile(x, q)), 2) if len(x) else None
    out = {"bench": "live", "start": str(start), "end": str(end), "bars": lp.stats["bars"], "journal": "memory" if a.memory_journal else "sqlite file", "orders": int(len(lat)),
           "executor": "paper" if a.paper else "BinanceExecutor → fake over loopback REST", "speed": a.speed, "wall_s": round(wall, 1),
           "cpu_ms_per_bar": round((time.process_time() - cpu0[0]) / max(n[0] - 1, 1) * 1e3, 2), # the whole process (fake included), after the first decision
           "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": round(float(lat.max()), 2) if len(lat) else None,
           "decision_p50_ms": pct(all_lat, 50), "decision_p99_ms": pct(all_lat, 99),
           "slowest_decisions": [(int(i), int((start.minute + i) % 60), round(float(all_lat[i]), 1)) for i in np.argsort(all_lat)[-5:]], # (bar, its minute in the hour, ms)
           "slowest_orders": [(int(i), int((start.minute + i) % 60), round(float(all_lat[i]), 1)) for i in np.flatnonzero(ordered[:n[0]])[np.argsort(lat)[-5:]]],
           "gc": {**{f"gen{g}": {"collections": int(gcs[g, 0]), "longest_ms": round(float(gcs[g, 1]), 1)} for g in range(3)}, "over_5ms": gc_slow},
           "rss_start_mb": round(base[1], 1) if base else None, "rss_end_mb": round(rss[-1][1], 1) if rss else None, "rss_after_close_mb": round(rss_mb(), 1),
           "rss_growth_mb": round(rss[-1][1] - base[1], 1) if base else None, "rss_growth_from_bar": base[0] if base else None,
           "rss_samples_mb": [(k, round(x, 1)) for k, x in rss],
           "model": a.model or "none (the fallback rule)", "long_model": a.long_model, "summary": lp.summary, "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    if bd is not None:
        out["breakdown_ms"] = bd.table(ordered[:n[0]])
        out["slowest_breakdown_ms"] = {int(i): {k: round(v, 2) for k, v in bd.records[i].items()} for i in np.argsort(all_lat)[-5:]} # where the tail went
        for part in ("orders", "all"):
            log(f"stage breakdown, decisions with {'an order' if part == 'orders' else 'or without one'} (mean / p50 ms):")
            for k, v in out["breakdown_ms"][part].items(): log(f"  {k:48s} {v['mean']:8.3f} {v['p50']:8.3f}")
    print(json.dumps(out, default=str))

if __name__ == "__main__":
    main()
