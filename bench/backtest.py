"""Benchmark: btcfut's BacktestEngine against vectorbt and backtesting.py on one year of 1m bars.

Data: the bundled real BTCUSDT 1m klines (two real stretches, 82,586 minutes) tiled to 525,600 minutes on a
continuous 1m grid starting 2024-06-01 UTC. Each copy of a stretch is rescaled so its first open equals the previous
bar's close (prices stay continuous; every bar's returns, ranges and volume are real). Funding: the real BTCUSDT
funding rates from 2024-06-01 on, one per 8h on the synthetic grid. Mark price = last price (no 1m mark is bundled).

Strategy (the same signals for all three): SMA(fast) vs SMA(slow) of the close, long when fast > slow else short,
decided at the close, filled at the next open, 2x equity (ours: a target only where the signal changes); 1.5% stop-loss. Ours adds what the peers do not model: funding,
isolated margin with Binance brackets and mark-price liquidation (leverage setting 50, 2x equity), volatility- and
size-dependent slippage. vectorbt: `Portfolio.from_signals` with the signals shifted one bar and `price=open`.
backtesting.py: a Strategy reading the same signal array, `trade_on_close=False`.

Floors, on the same arrays: a plain numba loop (one function, no validation, no ledger) modelling taker fees, fixed
slippage, funding, a 1.5% stop and isolated liquidation with one maintenance rate; and a memory pass (one numba loop
that reads every per-bar array the engine reads and writes one output): the least any exact per-bar engine can cost.

Sweep: `--sweep` SMA parameter sets (signals computed outside the timing): `BacktestEngine.run_many` on every core,
the same with one thread, vectorbt's broadcast `from_signals` (one column per set, tz-naive) and the plain loop once
per set. The first three alternate in rounds (a change of load hits all of them; each figure is its best round); the
ratios and run_many's speed-up over one thread are printed, with the CPU seconds of each (the work itself, whatever
else runs on the machine).

The machine may be shared: each figure is the best of `--repeat` runs, all in this one process, and the load average
before and after is printed.

Prints progress to stderr and one JSON object as the last line of stdout.
Run: `.venv/bin/python bench/backtest.py` (a few minutes on 2 cores); `--quick` for a smoke run; `--ours-only` times
only this engine (also what happens for a peer that is not installed: its figures are null).
"""
from __future__ import annotations
import argparse, importlib.util, json, os, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from btcfut.core import Config
from btcfut.data.store import DataManager
from btcfut.backtest import BacktestEngine, warmup, _prepare
from btcfut.backtest_kernels import run_bars

def log(*a): print(*a, file=sys.stderr, flush=True)

def year_of_minutes(n:int, start="2024-06-01") -> tuple[pd.DataFrame, str]:
    "Real 1m bars tiled to `n` minutes with continuous prices (see the module docstring)."
    real = DataManager().load("klines", interval="1m")[["open", "high", "low", "close", "volume"]]
    t = real.index.as_unit("ms").asi8
    breaks = np.flatnonzero(np.diff(t) != 60_000) + 1
    stretches = [real.iloc[a:b].to_numpy() for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(real)])]
    out, k, have, prev_close = [], 0, 0, None
    while have < n:
        blk = stretches[k % len(stretches)].copy(); k += 1
        if prev_close is not None: blk[:, :4] *= prev_close/blk[0, 0]
        blk = blk[: n - have]
        out.append(blk); have += len(blk); prev_close = blk[-1, 3]
    a = np.concatenate(out)
    idx = pd.date_range(start, periods=n, freq="1min", tz="UTC", name="time").as_unit("ms")
    bars = pd.DataFrame(a, columns=["open", "high", "low", "close", "volume"], index=idx)
    how = (f"bundled real BTCUSDT 1m klines ({len(real):,} minutes in {len(stretches)} real stretches: "
           + ", ".join(f"{len(s):,}" for s in stretches) + f") tiled {k} stretch copies to {n:,} minutes on a continuous "
           f"1m grid from {start}; each copy rescaled so its first open equals the previous close")
    return bars, how

def funding_for(bars:pd.DataFrame, start="2024-06-01") -> pd.DataFrame:
    "Real funding rates in order, one per 8h over the bars' span."
    real = DataManager().load("fundingRate")
    rates = real.loc[real.index >= pd.Timestamp(start, tz="UTC"), "funding_rate"].to_numpy()
    times = pd.date_range(bars.index[0], bars.index[-1], freq="8h", name="time").as_unit("ms")
    rates = np.resize(rates, len(times))
    return pd.DataFrame({"funding_rate": rates}, index=times)

def sma(x:np.ndarray, n:int) -> np.ndarray:
    c = np.cumsum(np.r_[0.0, x]); out = np.full(len(x), np.nan); out[n-1:] = (c[n:] - c[:-n])/n; return out

def signal(close:np.ndarray, fast:int, slow:int) -> np.ndarray:
    "+1 long / -1 short decided at each close; 0 before the slow SMA exists."
    f, s = sma(close, fast), sma(close, slow)
    return np.where(np.isnan(s), 0.0, np.where(f > s, 1.0, -1.0))

def on_change(sig:np.ndarray, lev:float) -> np.ndarray:
    "Target `lev * sig` where the signal changes, NaN (keep the position) elsewhere: no rebalancing churn."
    prev = np.r_[0.0, sig[:-1]]
    return np.where(sig != prev, lev*sig, np.nan)

@njit(cache=True, nogil=True, error_model="numpy")
def plain_loop(o, h, l, c, funding, target, equity0, fee, slip, stop, lev, mmr):
    "A plain loop: targets at the open with fee and slippage, funding, a stop and isolated liquidation. Returns (final equity, trades)."
    wallet, pos, entry, margin, liq, sl, n = equity0, 0.0, 0.0, 0.0, np.nan, np.nan, 0
    eq = equity0
    for i in range(1, len(o)):
        if pos != 0.0 and funding[i] != 0.0:
            pay = pos*o[i]*funding[i]; wallet -= pay; margin -= pay
            liq = (entry - margin/pos)/(1.0 - mmr) if pos > 0 else (entry - margin/pos)/(1.0 + mmr)
        t = target[i-1]
        if t == t: # a new target: close, then open at the open
            if pos != 0.0:
                px = o[i]*(1 - slip) if pos > 0 else o[i]*(1 + slip)
                wallet += pos*(px - entry) - abs(pos)*px*fee; pos = 0.0; margin = 0.0; n += 1
            if t != 0.0:
                px = o[i]*(1 + slip) if t > 0 else o[i]*(1 - slip)
                q = np.floor(abs(t)*eq/c[i-1]*1000.0)/1000.0
                pos = q if t > 0 else -q; entry = px; margin = q*px/lev; wallet -= q*px*fee
                liq = (entry - margin/pos)/(1.0 - mmr) if pos > 0 else (entry - margin/pos)/(1.0 + mmr)
                sl = entry*(1 - stop) if pos > 0 else entry*(1 + stop)
        if pos > 0:
            if l[i] <= liq: wallet -= margin; pos = 0.0; margin = 0.0; n += 1
            elif l[i] <= sl: wallet += pos*(sl*(1 - slip) - entry) - pos*sl*fee; pos = 0.0; margin = 0.0; n += 1
        elif pos < 0:
            if h[i] >= liq: wallet -= margin; pos = 0.0; margin = 0.0; n += 1
            elif h[i] >= sl: wallet += pos*(sl*(1 + slip) - entry) + pos*sl*fee; pos = 0.0; margin = 0.0; n += 1
        eq = wallet + pos*(c[i] - entry)
    return eq, n

@njit(cache=True, nogil=True)
def memory_pass(o, h, l, c, v, mo, mh, ml, mc, tms, funding, target, out):
    "Read every per-bar array the engine reads, write one output per bar: the memory floor."
    for i in range(len(o)):
        out[i] = (o[i] + h[i] + l[i] + c[i] + v[i] + mo[i] + mh[i] + ml[i] + mc[i] + tms[i] + funding[i]
                  + (target[i] if target[i] == target[i] else 0.0))
    return out

def run_vectorbt_sweep(bars:pd.DataFrame, sigs:np.ndarray, stop:float, fees:float, slip:float):
    "vectorbt's broadcast sweep: one column of signals per parameter set, one `from_signals` call."
    import vectorbt as vbt
    s = np.vstack([np.zeros((1, sigs.shape[1])), sigs[:-1]]) # executed on the next bar, at its open
    prev = np.vstack([np.zeros((1, sigs.shape[1])), s[:-1]])
    long_in, short_in = (s > 0) & (prev <= 0), (s < 0) & (prev >= 0)
    cols = pd.RangeIndex(sigs.shape[1], name="set")
    f = lambda a: pd.DataFrame(a, bars.index, cols)
    return vbt.Portfolio.from_signals(bars["close"], entries=f(long_in), exits=f(short_in), short_entries=f(short_in),
                                      short_exits=f(long_in), price=bars["open"], open=bars["open"], high=bars["high"],
                                      low=bars["low"], fees=fees, slippage=slip, sl_stop=stop, init_cash=10_000.0,
                                      freq="1min")

def best_of(fn, repeat:int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t0)
    return best, out

def cold_compile_s() -> float:
    "Seconds to compile the core in a fresh process with an empty numba cache."
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-c", "from btcfut.backtest import warmup; print(warmup())"],
                           env=os.environ | {"NUMBA_CACHE_DIR": d}, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])

def run_vectorbt(bars:pd.DataFrame, sig:np.ndarray, stop:float, fees:float, slip:float):
    import vectorbt as vbt
    s = pd.Series(sig, bars.index).shift(1).fillna(0.0) # executed on the next bar, at its open
    prev = s.shift(1).fillna(0.0)
    long_in, short_in = (s > 0) & (prev <= 0), (s < 0) & (prev >= 0)
    return vbt.Portfolio.from_signals(bars["close"], entries=long_in, exits=short_in, short_entries=short_in,
                                      short_exits=long_in, price=bars["open"], open=bars["open"], high=bars["high"],
                                      low=bars["low"], fees=fees, slippage=slip, sl_stop=stop, init_cash=10_000.0,
                                      freq="1min")

def run_backtesting(bars:pd.DataFrame, sig:np.ndarray, stop:float, fees:float):
    from backtesting import Backtest, Strategy
    data = bars.rename(columns=str.capitalize)
    if data.index.tz is not None: data.index = data.index.tz_localize(None)
    class Cross(Strategy):
        def init(self): self.sig = self.I(lambda: sig, name="signal", plot=False)
        def next(self):
            s, p = self.sig[-1], self.data.Close[-1]
            if s > 0 and not self.position.is_long: self.buy(size=0.9, sl=p*(1 - stop))
            elif s < 0 and not self.position.is_short: self.sell(size=0.9, sl=p*(1 + stop))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(data, Cross, cash=10_000_000.0, commission=fees, trade_on_close=False, exclusive_orders=True,
                      finalize_trades=True)
        return bt.run()

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--bt-slice", type=int, default=525_600, help="bars timed for backtesting.py (scaled linearly when fewer than --bars)")
    ap.add_argument("--sweep", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--ours-only", action="store_true", help="skip vectorbt and backtesting.py")
    a = ap.parse_args()
    if a.quick: a.bars, a.bt_slice, a.sweep, a.repeat = 20_000, 5_000, 4, 1
    fast, slow, stop = 120, 720, 0.015
    load_before = os.getloadavg()
    log(f"load average {load_before[0]:.2f} on {os.cpu_count()} cores")

    log("compiling (cold, fresh process, empty numba cache) ...")
    compile_s = cold_compile_s()
    cache_load_s = warmup()
    bars, how = year_of_minutes(a.bars)
    funding = funding_for(bars)
    sig = signal(bars["close"].to_numpy(), fast, slow)
    target = pd.Series(on_change(sig, 2.0), bars.index, name="target")
    cfg = Config.load()
    eng = BacktestEngine(cfg, leverage=50.0)
    fees, slip = eng.params["taker"], eng.params["slippage_bps"]*1e-4

    log(f"ours on {len(bars):,} bars ...")
    ours_s, res = best_of(lambda: eng.run(bars, target, funding=funding, stop_loss=stop), a.repeat)
    log(f"  {ours_s:.4f} s, {res}")
    prep = _prepare(bars, None, funding, None)
    args = eng._kernel_inputs(prep, target, "equity_fraction", None, stop, None)
    run_bars(*args, False) # compiled (or loaded) before the timing
    core_s, _ = best_of(lambda: run_bars(*args, True), a.repeat)
    core_totals_s, _ = best_of(lambda: run_bars(*args, False), a.repeat)
    log(f"  compiled core alone {core_s*1e3:.2f} ms ({core_s/len(bars)*1e9:.1f} ns/bar); equity only {core_totals_s*1e3:.2f} ms")

    log("floors: a plain numba loop and a memory pass ...")
    o, h, l, c, v, mo, mh, ml, mc = prep.arrays
    tg = target.to_numpy()
    plain = lambda t: plain_loop(o, h, l, c, prep.funding, t, 10_000.0, fees, slip, stop, 50.0, float(eng.br[2, 0]))
    plain(tg); plain_s, plain_out = best_of(lambda: plain(tg), a.repeat)
    buf = np.empty(len(bars)); mem = lambda: memory_pass(o, h, l, c, v, mo, mh, ml, mc, prep.times_ms, prep.funding, tg, buf)
    mem(); memory_s, _ = best_of(mem, a.repeat)
    log(f"  plain loop {plain_s*1e3:.2f} ms ({plain_out[1]} trades), memory pass {memory_s*1e3:.2f} ms")

    vectorbt_s = vbt_warm_s = vbt_tz_s = pf = None
    if not a.ours_only and importlib.util.find_spec("vectorbt"):
        log("vectorbt ...")
        naive = bars.copy(); naive.index = naive.index.tz_localize(None) # vectorbt's fast path: a tz-naive index
        t0 = time.perf_counter(); run_vectorbt(naive.iloc[:2000], sig[:2000], stop, fees, slip); vbt_warm_s = time.perf_counter() - t0
        vectorbt_s, pf = best_of(lambda: run_vectorbt(naive, sig, stop, fees, slip), a.repeat)
        vbt_tz_s, _ = best_of(lambda: run_vectorbt(bars, sig, stop, fees, slip), min(a.repeat, 2))
        log(f"  {vectorbt_s:.4f} s on a tz-naive index, {vbt_tz_s:.2f} s on the tz-aware one (its numba warm-up {vbt_warm_s:.1f} s excluded)")
    else: log("vectorbt: skipped")

    n_bt = min(a.bt_slice, len(bars))
    backtesting_s = bt_slice_s = stats = None
    if not a.ours_only and importlib.util.find_spec("backtesting"):
        log(f"backtesting.py on {n_bt:,} bars ...")
        t0 = time.perf_counter(); stats = run_backtesting(bars.iloc[:n_bt], sig[:n_bt], stop, fees); bt_slice_s = time.perf_counter() - t0
        backtesting_s = bt_slice_s*len(bars)/n_bt
        log(f"  {bt_slice_s:.2f} s on the slice → {backtesting_s:.1f} s scaled to {len(bars):,} bars")
    else: log("backtesting.py: skipped")
    r = lambda x, k: None if x is None else round(x, k)
    ratio = lambda x, y, k=1: None if x is None or y is None else round(x/y, k)

    grid = [(f, s) for f in np.linspace(15, 240, 10).astype(int) for s in np.linspace(300, 2400, 10).astype(int)][: a.sweep]
    log(f"sweep of {len(grid)} parameter sets (signals computed outside the timing) ...")
    close = bars["close"].to_numpy()
    sigs = np.column_stack([signal(close, f, s) for f, s in grid])
    targets = {f"{f}/{s}": pd.Series(on_change(sigs[:, k], 2.0), bars.index) for k, (f, s) in enumerate(grid)}
    sweep_repeat = max(1, min(a.repeat, 3))
    tgs = [t.to_numpy() for t in targets.values()]
    many = lambda w=None: eng.run_many(bars, targets, funding=funding, stop_loss=stop, workers=w)
    many(); many(1) # compiled (or loaded) before the timing
    vbt_sweep = lambda: run_vectorbt_sweep(naive, sigs, stop, fees, slip)
    if vectorbt_s is not None: run_vectorbt_sweep(naive.iloc[:2000], sigs[:2000], stop, fees, slip) # its numba warm-up for 2-D inputs
    # rounds alternate the three so a change of load on the shared machine hits all of them; each figure is its best round
    # CPU seconds (all threads of this process) beside the wall times: the work itself, whatever else loads the machine
    sweep_s = sweep1_s = vbt_sweep_s = sweep_cpu = sweep1_cpu = vbt_sweep_cpu = float("inf")
    for _ in range(sweep_repeat):
        t0, c0 = time.perf_counter(), time.process_time(); sweep = many()
        sweep_s, sweep_cpu = min(sweep_s, time.perf_counter() - t0), min(sweep_cpu, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time(); sweep1 = many(1)
        sweep1_s, sweep1_cpu = min(sweep1_s, time.perf_counter() - t0), min(sweep1_cpu, time.process_time() - c0)
        if vectorbt_s is not None:
            t0, c0 = time.perf_counter(), time.process_time(); vbt_sweep()
            vbt_sweep_s, vbt_sweep_cpu = min(vbt_sweep_s, time.perf_counter() - t0), min(vbt_sweep_cpu, time.process_time() - c0)
    if vectorbt_s is None: vbt_sweep_s = vbt_sweep_cpu = None
    key = next(iter(targets))
    same = (sweep.to_dict() == sweep1.to_dict()
            and all(sweep.loc[k].to_dict() == eng.run(bars, targets[k], funding=funding, stop_loss=stop).totals for k in list(targets)[:3]))
    log(f"  run_many {sweep_s:.3f} s on {os.cpu_count()} threads, {sweep1_s:.3f} s on one: speed-up {sweep1_s/sweep_s:.2f}x; "
        f"rows == run: {same}; best final equity {sweep.final_equity.max():,.2f} ({sweep.final_equity.idxmax()})")
    plain_sweep_s, _ = best_of(lambda: [plain(t) for t in tgs], sweep_repeat)
    log(f"  plain loop x{len(grid)}: {plain_sweep_s:.3f} s")
    if vbt_sweep_s is not None:
        log(f"  vectorbt broadcast sweep (tz-naive): {vbt_sweep_s:.2f} s; run_many is {vbt_sweep_s/sweep_s:.1f}x faster "
            f"({vbt_sweep_s/sweep1_s:.1f}x on one thread); CPU seconds: vectorbt {vbt_sweep_cpu:.2f}, run_many {sweep_cpu:.3f} "
            f"({vbt_sweep_cpu/sweep_cpu:.1f}x less work)")
    load_after = os.getloadavg()
    log(f"load average {load_after[0]:.2f} after")

    t = res.totals
    out = {
        "bench": "backtest", "n_bars": len(bars), "data": how,
        "funding": f"{len(funding)} real BTCUSDT funding rates from 2024-06-01 on, one per 8h on the synthetic grid",
        "mark": "mark price = last price (no 1m mark-price klines are bundled)",
        "strategy": f"SMA({fast}) vs SMA({slow}) on 1m closes, long/short 2x equity, stop-loss {stop:.1%}, decided at the close, filled at the next open",
        "ours_models": "taker fees, fixed+volatility/size slippage, real funding on mark notional, isolated margin 50x with Binance brackets, mark-price liquidation, stop-loss inside the bar (worst case), 0.001 BTC steps, 100 USDT min notional",
        "vectorbt_models": "fees, fixed slippage, sl_stop; no funding, margin or liquidation",
        "backtesting_models": "commission, sl; no funding, margin or liquidation",
        "plain_models": "taker fee, fixed slippage, funding at the open, 1.5% stop, isolated liquidation with one maintenance rate; no ledger, no validation, no brackets, no min notional",
        "ours_s": round(ours_s, 5), "core_s": round(core_s, 5), "core_ns_per_bar": round(core_s/len(bars)*1e9, 1),
        "core_equity_only_s": round(core_totals_s, 5),
        "plain_loop_s": round(plain_s, 6), "memory_pass_s": round(memory_s, 6),
        "vectorbt_s": r(vectorbt_s, 5), "vectorbt_tz_aware_s": r(vbt_tz_s, 3), "backtesting_s": r(backtesting_s, 3),
        "ratio_vs_vectorbt": ratio(vectorbt_s, ours_s, 2), "ratio_vs_vectorbt_tz_aware": ratio(vbt_tz_s, ours_s),
        "ratio_vs_backtesting": ratio(backtesting_s, ours_s), "ratio_ours_over_plain_loop": ratio(ours_s, plain_s),
        "ratio_core_over_memory_pass": ratio(core_s, memory_s),
        "backtesting_measured_bars": n_bt, "backtesting_measured_s": r(bt_slice_s, 3),
        "backtesting_scaled": n_bt < len(bars),
        "backtesting_note": f"backtesting.py timed on the first {n_bt:,} bars and scaled linearly to {len(bars):,}" if n_bt < len(bars) else "full run",
        "timing": f"best of {a.repeat} runs each (sweeps: best of {sweep_repeat} alternating rounds), all in one process; frames in → results out (validation, the core, result Series and ledger); numba compile excluded",
        "load_avg_before": round(load_before[0], 2), "load_avg_after": round(load_after[0], 2),
        "compile_s": round(compile_s, 2), "cache_load_s": round(cache_load_s, 3),
        "compile_note": "compile_s: cold compile in a fresh process with an empty numba cache; cache_load_s: first call when numba's on-disk cache (cache=True) is warm",
        "vectorbt_warmup_s": r(vbt_warm_s, 2),
        "vectorbt_note": "vectorbt_s uses a tz-naive index (its fast path; the frames are converted outside the timing); with the canonical tz-aware UTC index vectorbt 1.2 + pandas 3 spends most of its time turning the index into Timestamp objects (vectorbt_tz_aware_s)",
        "sweep_n": len(grid), "sweep_s": round(sweep_s, 3), "sweep_one_thread_s": round(sweep1_s, 3),
        "sweep_per_run_s": round(sweep_s/len(grid), 5), "sweep_rows_equal_run": bool(same),
        "sweep_plain_loop_s": round(plain_sweep_s, 4), "sweep_vectorbt_s": r(vbt_sweep_s, 3),
        "ratio_sweep_vs_vectorbt": ratio(vbt_sweep_s, sweep_s), "ratio_sweep_one_thread_vs_vectorbt": ratio(vbt_sweep_s, sweep1_s),
        "ratio_sweep_threads": ratio(sweep1_s, sweep_s, 2),
        "sweep_cpu_s": round(sweep_cpu, 3), "sweep_one_thread_cpu_s": round(sweep1_cpu, 3), "sweep_vectorbt_cpu_s": r(vbt_sweep_cpu, 3),
        "ratio_sweep_cpu_vs_vectorbt": ratio(vbt_sweep_cpu, sweep_cpu),
        "sweep_note": f"targets built outside the timing; BacktestEngine.run_many (bars validated once, each target checked in the compiled run_totals, totals per set, one thread per core); run_many on every core, on one thread and vectorbt's broadcast sweep alternate in {sweep_repeat} rounds, each figure its best round",
        "ours_trades": t["n_trades"], "ours_liquidations": t["n_liquidations"], "ours_stop_losses": t["n_stop_loss"],
        "ours_final_equity": round(t["final_equity"], 2), "ours_fees": round(t["fees_paid"], 2),
        "ours_funding": round(t["funding_paid"], 2), "ours_slippage": round(t["slippage_paid"], 2),
        "plain_loop_trades": int(plain_out[1]),
        "vectorbt_trades": None if pf is None else int(pf.trades.count()),
        "backtesting_trades_on_slice": None if stats is None else int(stats["# Trades"]),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out))

if __name__ == "__main__":
    main()
