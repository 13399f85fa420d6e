"The live loop against the loopback fake exchange: a replay end to end, a dropped websocket, a stale feed, a raising model."
import asyncio, logging, math
import aiohttp, numpy as np, pandas as pd, pytest
from btcfut.core import time_to_ms
from btcfut.data.store import load_sample
from btcfut.features import build_features
from btcfut.fakex import FakeExchange, MarketData
from btcfut.live import backoff_delays, fetch_bars, bars_frame, paper_loop, rule_signal
from btcfut.monitoring.breakers import Breakers
from btcfut.monitoring.server import MonitorServer

WARM, M = 300, 60_000
START = pd.Timestamp("2023-08-01 05:00", tz="UTC") # first live bar

@pytest.fixture(scope="module")
def sample():
    s = load_sample("1m", "2023-07-31 23:00", "2023-08-01 07:59")
    return s.bars, s.funding

async def _fake(sample):
    bars, funding = sample
    fx = FakeExchange(MarketData(klines={"1m": bars}, funding=funding), port=0)
    await fx.start(); fx.set_time(START)
    return fx

async def _loop(fx, n, **kw):
    "A paper loop warmed on the fake's REST klines before START."
    lp = paper_loop(START, capacity=n + 5, **kw)
    async with aiohttp.ClientSession() as s:
        hist = await fetch_bars(s, fx.base_url, "BTCUSDT", "1m", int(time_to_ms(START)) - WARM * M, int(time_to_ms(START)))
    assert len(hist) == WARM
    lp.warm_up(bars_frame(hist))
    return lp

async def _connected(fx, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if fx._sockets: return
        await asyncio.sleep(0.01)
    raise TimeoutError("the loop did not connect")

def _key(ds): return [(d.open_ms, d.signal, d.source, round(d.target_qty, 9), round(d.order_qty, 9)) for d in ds]

async def _stepped(sample, n, drop_at=None, stall_at=None, stall_s=0.0, breakers=None, monitor=None):
    "Advance the fake bar by bar; optionally drop the websockets or go silent along the way."
    fx = await _fake(sample)
    try:
        lp = await _loop(fx, n, breakers=breakers)
        t0 = int(time_to_ms(START))
        task = asyncio.create_task(lp.run(fx.ws_url, fx.base_url, until_ms=t0 + (n - 1) * M, check_s=0.02,
                                          backoff=backoff_delays(0.02, 0.1, seed=1)))
        await _connected(fx)
        readyz = None
        for i in range(n):
            if i == drop_at: assert fx.drop_websockets() >= 1
            if i == stall_at:
                await asyncio.sleep(stall_s)
                if monitor is not None:
                    async with aiohttp.ClientSession() as s, s.get(monitor.url + "/readyz") as r: readyz = (r.status, await r.json())
                lp._stalled_at = len(lp.decisions)
            await fx.advance(t0 + (i + 1) * M + 30_000) # the clock half-way into the next bar: bar i closed
            await asyncio.sleep(0.01)
        await asyncio.wait_for(task, 60)
        return lp, readyz
    finally: await fx.stop()

def test_replay_end_to_end(sample):
    "A replay through the fake's websocket at 1200× decides every bar once; features and signals equal the batch ones."
    n = 60
    async def main():
        fx = await _fake(sample)
        try:
            lp = await _loop(fx, n)
            fx.start_replay(START, speed=1200.0)
            await asyncio.wait_for(lp.run(fx.ws_url, fx.base_url, until_ms=int(time_to_ms(START)) + (n - 1) * M, check_s=0.05), 60)
            return lp
        finally: await fx.stop()
    lp = asyncio.run(main())
    ds = lp.decisions
    bars = sample[0]
    i0 = bars.index.get_loc(START)
    assert [d.open_ms for d in ds] == list(time_to_ms(bars.index[i0:i0 + n]))
    batch = build_features(bars.iloc[i0 - WARM:i0 + n]).iloc[WARM:]
    assert [d.signal for d in ds] == [rule_signal(batch.iloc[i]) for i in range(n)]
    assert any(d.order_qty for d in ds)
    expo = lp.metrics.exposition().decode()
    assert "btcfut_errors_total{" not in expo and lp.breakers.allows_new_exposure(), lp.breakers
    assert len(lp.journal.rows("decision")) >= n and lp.journal.rows("order_request")

def test_drop_mid_bar_backfills_same_decisions(sample):
    "Websocket cut in the middle of a run: the loop reconnects, fetches the missed bars and decides exactly as without the drop."
    n = 40
    ref, _ = asyncio.run(_stepped(sample, n))
    got, _ = asyncio.run(_stepped(sample, n, drop_at=15))
    assert len(ref.decisions) == n
    assert _key(got.decisions) == _key(ref.decisions)
    expo = got.metrics.exposition().decode()
    assert 'btcfut_reconnects_total{stream="kline"} 1.0' in expo and 'btcfut_reconnects_total{stream="rest"} 1.0' in expo

def test_stale_feed_opens_breaker(sample):
    "A silent feed opens stale_data: /readyz fails and no order adds exposure afterwards."
    n = 40
    br = Breakers(max_data_age_s=0.3, cooldown_s=600)
    async def main():
        lp_box = {}
        from btcfut.monitoring.metrics import MetricsCollector
        from btcfut.monitoring.server import HealthState
        health = HealthState(max_data_age_s=0.3, breakers=br)
        mon = MonitorServer(MetricsCollector(), health)
        async with mon:
            fx = await _fake(sample)
            try:
                lp = await _loop(fx, n, breakers=br, health=health)
                t0 = int(time_to_ms(START))
                task = asyncio.create_task(lp.run(fx.ws_url, fx.base_url, until_ms=t0 + (n - 1) * M, check_s=0.02,
                                                  backoff=backoff_delays(0.02, 0.1, seed=1)))
                await _connected(fx)
                readyz = None
                for i in range(n):
                    if i == 10:
                        await asyncio.sleep(1.0)
                        async with aiohttp.ClientSession() as s, s.get(mon.url + "/readyz") as r: readyz = (r.status, await r.json())
                        stalled_at = len(lp.decisions)
                    await fx.advance(t0 + (i + 1) * M + 30_000); await asyncio.sleep(0.01)
                await asyncio.wait_for(task, 60)
                return lp, readyz, stalled_at
            finally: await fx.stop()
    lp, (status, body), k = asyncio.run(main())
    assert status == 503 and not body["checks"]["breakers_closed"]["ok"] and "stale_data" in body["checks"]["breakers_closed"]["detail"]
    assert k == 10 and len(lp.decisions) == n
    pos = [lp.decisions[k - 1].target_qty] + [d.target_qty for d in lp.decisions[k:]]
    for before, d in zip(pos, lp.decisions[k:]):
        assert abs(d.target_qty) <= abs(before) + 1e-12 and (d.target_qty == 0 or before == 0 or np.sign(d.target_qty) == np.sign(before)), d
    assert any(d.blocked.startswith("breakers: stale_data") for d in lp.decisions[k:])
    assert 'btcfut_breaker_state{breaker="stale_data"} 2.0' in lp.metrics.exposition().decode()

class _RaisingBaseline:
    "A baseline link whose every call raises (a model that broke in production)."
    threshold = 0.5
    def __init__(self, columns): self.scaler = type("S", (), {"columns": columns})()
    def predict_proba(self, x): raise RuntimeError("weights corrupted")

def test_model_raising_falls_back(sample, caplog):
    "A raising model: the chain answers flat, the fallback metric counts it and the log says why."
    from btcfut.models.serve import ShortPredictor
    bars = sample[0]
    i0 = bars.index.get_loc(START)
    feats = list(build_features(bars.iloc[i0 - WARM:i0]).columns[:8])
    lp = paper_loop(START, capacity=10, predictor=ShortPredictor(baseline=_RaisingBaseline(feats)))
    lp.warm_up(bars.iloc[i0 - WARM:i0])
    with caplog.at_level(logging.WARNING, logger="btcfut"):
        ds = [lp.on_bar({"open_ms": int(time_to_ms(t)), **r.to_dict()}) for t, r in bars.iloc[i0:i0 + 3].iterrows()]
    assert [d.source for d in ds] == ["flat"] * 3 and all(d.signal == 0 for d in ds)
    expo = lp.metrics.exposition().decode()
    line = [l for l in expo.splitlines() if l.startswith("btcfut_fallbacks_total") and 'reason="raised"' in l]
    assert line and float(line[0].split()[-1]) == 3.0, line
    msgs = " ".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)
    assert "weights corrupted" in msgs and "fallback" in msgs

def test_sigterm_stops_cleanly(sample):
    "SIGTERM mid-replay: the loop finishes the bar it is deciding, stops, and every decision is in the journal."
    import os, signal
    n = 200
    async def main():
        fx = await _fake(sample)
        try:
            lp = await _loop(fx, n)
            fx.start_replay(START, speed=600.0)
            asyncio.get_running_loop().call_later(1.5, os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(lp.run(fx.ws_url, fx.base_url, until_ms=int(time_to_ms(START)) + (n - 1) * M, check_s=0.05,
                                          handle_signals=True), 30)
            return lp
        finally: await fx.stop()
    lp = asyncio.run(main())
    assert 0 < len(lp.decisions) < n
    rows = [r for r in lp.journal.rows("decision") if "signal" in r["payload"]]
    assert [r["payload"]["bar"] for r in rows] == [str(pd.Timestamp(d.open_ms, unit="ms", tz="UTC")) for d in lp.decisions]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL # handlers removed on the way out
