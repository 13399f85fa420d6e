"""Benchmark: the live loop end to end over loopback, from a closed kline arriving on the websocket to the order
reaching the exchange, and the process's memory growth over a long replay.

The loopback fake exchange serves the bundled real BTCUSDT 1m bars and replays them through its websocket at `--speed`
data seconds per second (one contiguous stretch: 2023-07-19 .. 2023-08-16). The loop (`btcfut.live.replay_session`)
decides every closed bar: incremental features, the signal (the fallback rule: no model directory), sizing, risk, and a
MARKET order sent to the fake over REST through `BinanceExecutor` (testnet mode, the fake's keys) whenever the target
changes. Latency per order: from the kline message's arrival (read off the socket) to the fake's answer to the order
(so it includes the REST round trip of the position and balance reads and of the order itself). RSS is sampled every
`--sample` bars; `rss_growth_mb` = RSS at the end minus RSS after the first `--sample` bars (past the warm-up's
allocations and the first JIT compilations). Latencies of every decision are kept in arrays allocated
before the replay (the loop itself keeps only the last `live.max_decisions`). The journal is a SQLite file in a temporary directory (`--memory-journal`: in memory, where it grows with
every row). The fake exchange runs in the same process and keeps every order and fill it saw, as an exchange does.

Prints progress to stderr and one JSON object as the last line of stdout.
Run: `.venv/bin/python bench/live.py` (a day, about a minute); `--days 7` for a replayed week; `--paper` for orders
to an in-process paper account instead of the fake.
"""
from __future__ import annotations
import argparse, asyncio, json, logging, os, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from btcfut.core import Config
from btcfut.execution.journal import Journal
from btcfut.fakex import replay_fake
from btcfut.live import replay_session

def log(*a): print(*a, file=sys.stderr, flush=True)

def rss_mb() -> float:
    "Resident set size of this process, MB (from /proc)."
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return float("nan")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2023-07-20 00:00", help="first live bar, UTC")
    ap.add_argument("--days", type=float, default=1.0, help="days of 1m bars replayed")
    ap.add_argument("--speed", type=float, default=3000.0, help="data seconds per wall second")
    ap.add_argument("--sample", type=int, default=500, help="bars between RSS samples")
    ap.add_argument("--paper", action="store_true", help="orders to a paper account instead of the fake over REST")
    ap.add_argument("--memory-journal", action="store_true", help="journal in memory (it then grows in RSS) instead of a file in a temporary directory")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)d %(name)s %(message)s")
    start = pd.Timestamp(a.start, tz="UTC"); end = start + pd.Timedelta(days=a.days)
    rss, n = [], [0]
    size = int((end - start) / pd.Timedelta(minutes=1)) + 1
    lat_all, ordered = np.full(size, np.nan), np.zeros(size, bool) # allocated up front: the bench itself does not grow
    def on_decision(d):
        lat_all[n[0]], ordered[n[0]] = d.latency_ms, bool(d.order_qty)
        n[0] += 1
        if n[0] % a.sample == 0: rss.append(rss_mb()); log(f"{n[0]} bars, rss {rss[-1]:.1f} MB, {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    cfg = Config.load()
    tmp = tempfile.TemporaryDirectory()
    journal = Journal("sqlite://" if a.memory_journal else f"sqlite:///{tmp.name}/journal.sqlite", cfg=cfg)
    lp = asyncio.run(replay_session(replay_fake(start, end, a.speed, cfg), start, end, a.speed, cfg, journal=journal,
                                    exchange=not a.paper, on_decision=on_decision))
    wall = time.perf_counter() - t0
    all_lat = lat_all[:n[0]]; lat = all_lat[ordered[:n[0]]]
    pct = lambda x, q: round(float(np.percentile(x, q)), 2) if len(x) else None
    out = {"bench": "live", "start": str(start), "end": str(end), "bars": lp.stats["bars"], "journal": "memory" if a.memory_journal else "sqlite file", "orders": int(len(lat)),
           "executor": "paper" if a.paper else "BinanceExecutor → fake over loopback REST", "speed": a.speed, "wall_s": round(wall, 1),
           "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": round(float(lat.max()), 2) if len(lat) else None,
           "decision_p50_ms": pct(all_lat, 50), "decision_p99_ms": pct(all_lat, 99),
           "slowest_decisions": [(int(i), round(float(all_lat[i]), 1)) for i in np.argsort(all_lat)[-5:]],
           "rss_start_mb": round(rss[0], 1) if rss else None, "rss_end_mb": round(rss_mb(), 1),
           "rss_growth_mb": round(rss_mb() - rss[0], 1) if rss else None, "rss_samples_mb": [round(x, 1) for x in rss],
           "summary": lp.summary, "cpu_count": os.cpu_count()}
    print(json.dumps(out, default=str))

if __name__ == "__main__":
    main()
