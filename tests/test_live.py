"The live loop against the loopback fake exchange: a replay end to end, a dropped websocket, a stale feed, a raising model."
import asyncio, logging, math, time
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
    pos = [lp.decisions[k - 1].target_qty] + [d.target_qty for d in list(lp.decisions)[k:]]
    for before, d in zip(pos, list(lp.decisions)[k:]):
        assert abs(d.target_qty) <= abs(before) + 1e-12 and (d.target_qty == 0 or before == 0 or np.sign(d.target_qty) == np.sign(before)), d
    assert any(d.blocked.startswith("breakers: stale_data") for d in list(lp.decisions)[k:])
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

# --- a trained short model: live decisions equal the research flow's targets -------------------------------------

TINY = {"models.short.features": ["logret_1", "logret_4", "logret_12", "rsi_14", "bb_pctb_20_2", "natr_14", "volume_z_24", "close_to_ema_26",
                                  "rsi_14_1h", "funding_rate", "hours_to_next_funding"], # a 1h feature and the funding ones: warm-up and funding feed
        "models.short.lookback": 20, "models.short.d_model": 8, "models.short.n_heads": 2, "models.short.n_layers": 1,
        "models.short.epochs": 1, "models.short.batch_size": 32, "models.short.max_train_windows": 600,
        "models.short.deadline_ms": 1e6} # the deadline is not under test here: a loaded CI machine must not fall back

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    "A tiny short model and its baseline, trained once on the day and a half before the replay and saved as a model directory."
    from btcfut.core import Config
    from btcfut.models.serve import train_serving
    cfg = Config.load(overrides=TINY)
    d = tmp_path_factory.mktemp("models")
    s = load_sample("1m", "2023-07-30 12:00", "2023-08-01 00:00")
    train_serving(s.bars, s.funding, d, cfg)
    return d, cfg

def test_decisions_equal_research_targets(tiny_model):
    """A day of real bars through the fake's websocket with a trained model that reads a 1h feature and the funding features:
    the warm-up is sized from the model (longer than 300 bars), funding comes over REST (at the warm-up and when each of the
    08:00, 16:00 and 00:00 events is due), every decision is the model's, each feature row equals the batch one on the same bars and funding, each decision's
    side is the research flow's target (`signal_target` on the model's batch predictions) and its size the sizing rule's."""
    from btcfut.fakex import replay_fake
    from btcfut.live import replay_session
    from btcfut.models.serve import ShortPredictor
    from btcfut.models.short import signal_target
    from btcfut.sizing import PositionSizer
    from btcfut.core import Config
    d, _ = tiny_model
    cfg = Config.load(overrides={**TINY, "live.max_decisions": 2000}) # every decision kept in memory
    start, end = START, START + pd.Timedelta(hours=24)
    fx = replay_fake(start, end, 12000.0, cfg, warm=3000) # the store's bars and funding from 50 hours before
    lp = asyncio.run(replay_session(fx, start, end, 12000.0, cfg, model_dir=d))
    ds, w = list(lp.decisions), lp.warm_rows
    assert w == lp.warm_bars() > 14 * 60, w # the 1h RSI needs fifteen hours: the old fixed 300 bars left the model flat
    bars, funding = fx.data.bars("klines", "1m"), fx.data.funding
    i0, n = bars.index.get_loc(start), 1440
    assert [x.open_ms for x in ds] == list(time_to_ms(bars.index[i0:i0 + n]))
    assert {x.source for x in ds} == {"model"}
    assert "btcfut_fallbacks_total{" not in lp.metrics.exposition().decode()
    feats = build_features(bars.iloc[i0 - w:i0 + n], funding)
    live = pd.DataFrame(list(lp.rows))
    cols = ["rsi_14_1h", "funding_rate", "hours_to_next_funding"]
    pd.testing.assert_frame_equal(live[cols], feats.loc[live.index, cols], check_names=False, check_freq=False)
    assert lp._funding_last_ms == time_to_ms(funding.loc[:end].index[-1]) > time_to_ms(start) + 16 * 3_600_000 # the 00:00 event fetched while live
    p = ShortPredictor(d / "short", d / "baseline").predict(feats, times=feats.index[w:])
    pred = p.to_frame().assign(time=p.time, threshold=lp.predictor.model.meta["confidence_threshold"])
    target = signal_target(pred, lp.hold_bars, feats.index[w:])
    assert [x.signal for x in ds] == target.astype(int).tolist()
    assert 0 < sum(x.signal != 0 for x in ds) < n, "the model must call both ways and stay out sometimes"
    sizer = PositionSizer(cfg)
    want = [0.0 if s == 0 else float(sizer.fixed_fraction(x.equity, c, side=s)) for x, s, c in zip(ds, target.astype(int), bars.close.iloc[i0:i0 + n])]
    assert [x.want_qty for x in ds] == want
    assert any(x.order_qty for x in ds)
    # each call is scored once its label resolves, H bars later: the rolling hit rate and log loss of the last calls resolved
    from btcfut.models.short import short_labels
    m, q = lp.predictor.model.params, lp.metrics.short_quality
    lab = short_labels(bars.close, m.horizon, m.k, m.vol_window).label.iloc[i0:i0 + n - m.horizon].to_numpy().astype(int)
    pr = p.proba[:n - m.horizon][-q.hit.window:]; lab = lab[-q.hit.window:]
    assert len(q.pending) == m.horizon and len(q.hit) == q.hit.window < n - m.horizon
    assert q.hit.value == np.mean(pr.argmax(1) == lab) > 0
    np.testing.assert_allclose(q.log_loss.value, np.mean(-np.log(pr[np.arange(len(lab)), lab])), rtol=1e-6) # float32 probabilities, one window vs a batch
    assert f"btcfut_short_hit_rate {q.hit.value}" in lp.metrics.exposition().decode()

def test_short_warm_up_falls_back_on_nan(tiny_model, sample, caplog):
    "Warmed on too few bars for the 1h feature: every decision is a logged, counted `nan` fallback naming the feature."
    from btcfut.live import short_predictor
    d, cfg = tiny_model
    bars, funding = sample
    i0 = bars.index.get_loc(START)
    lp = paper_loop(START, capacity=10, cfg=cfg, predictor=short_predictor(d))
    with caplog.at_level(logging.WARNING, logger="btcfut"):
        lp.warm_up(bars.iloc[i0 - WARM:i0], funding.loc[:START])
        ds = [lp.on_bar({"open_ms": int(time_to_ms(t)), **r.to_dict()}) for t, r in bars.iloc[i0:i0 + 3].iterrows()]
    assert [x.source for x in ds] == ["flat"] * 3
    assert 'reason="nan",source="flat"} 3.0' in lp.metrics.exposition().decode()
    assert any("rsi_14_1h" in str(getattr(r, "fields", "")) for r in caplog.records)
    assert any(r.getMessage().startswith("warm-up too short") for r in caplog.records) # said at the warm-up already

# --- both models: the long forecast sets the view, the short call times the entries ---------------------------------

LONG = {"models.long.lookback": 24, "models.long.horizon": 24, "models.long.n_quantiles": 9, "models.long.hidden_size": 4,
        "models.long.attention_heads": 1, "models.long.hidden_continuous_size": 2, "models.long.max_epochs": 1, "models.long.every": 6}
LONG_FEATURES = ["logret_1", "logret_24", "rsi_14", "natr_14", "bb_pctb_20_2", "rsi_14_4h", "funding_rate"] # a 4h feature and funding

@pytest.fixture(scope="module")
def tiny_long(tmp_path_factory):
    "A tiny long forecaster (24-hour window and horizon) trained once on the store's hours of May to July 2023, saved as a model directory."
    from btcfut.core import Config
    from btcfut.models.long import LongConfig, train_long
    cfg = Config.load(overrides=LONG)
    s = load_sample("1h", "2023-04-01", "2023-07-31")
    m = train_long(build_features(s.bars, s.funding, cfg=cfg)[LONG_FEATURES], s.bars.close, LongConfig.from_config(cfg), "2023-05-01", "2023-07-31")
    return m.save(tmp_path_factory.mktemp("long") / "long")

def test_combined_decisions_equal_research_rule(tiny_model, tiny_long):
    """A day of real bars through the fake's websocket with both models: the loop builds the hours from the minutes, forecasts
    each on its worker, and every decision's target leverage is the research flow's combined rule on the same bars with the same
    models — batch long forecasts on the hours (the fake's 1h klines of the warm-up, then the minutes aggregated), `long_targets`,
    `long_view`, `time_entries` with the batch short calls — and its size leverage × equity / price."""
    from btcfut.core import Config
    from btcfut.data.store import resample_bars
    from btcfut.fakex import replay_fake
    from btcfut.live import replay_session, warm_hours_for
    from btcfut.models.serve import LongPredictor, ShortPredictor
    from btcfut.signals import SignalSettings, long_targets, long_view, time_entries
    from btcfut.sizing import PositionSizer
    d, _ = tiny_model
    cfg = Config.load(overrides={**TINY, **LONG, "live.max_decisions": 2000}) # every decision kept in memory
    chain = LongPredictor(tiny_long, deadline_ms=1e6) # the deadline is not under test
    start, end, n = START, START + pd.Timedelta(hours=24), 1440
    fx = replay_fake(start, end, 12000.0, cfg, warm=3000, warm_hours=warm_hours_for(chain, cfg))
    lp = asyncio.run(replay_session(fx, start, end, 12000.0, cfg, model_dir=d, long_model=chain))
    ds, s = list(lp.decisions), lp.summary
    assert lp._pool is None and not any(t.is_alive() for t in lp._long_pool._threads), "a paper account: no exchange thread; the long worker shut"
    assert s["strategy"] == "long+short" and lp.journal.rows("decision")[-1]["payload"]["strategy"] == "long+short"
    minutes, funding = fx.data.bars("klines", "1m"), fx.data.funding
    i0 = minutes.index.get_loc(start); idx = minutes.index[i0:i0 + n]
    assert [x.open_ms for x in ds] == list(time_to_ms(idx))
    assert {x.source for x in ds} == {"model"} and s["long"]["sources"] == {"model": 2 + 23} # two warm-up hours, then 05:00 .. 03:00 live (04:00 completes at the last bar)
    hours = pd.concat([fx.data.bars("klines", "1h").loc[:start - pd.Timedelta(hours=1)].iloc[-lp.long_warm_rows:],
                       resample_bars(minutes.iloc[i0:i0 + n], "1h", "1m", complete="keep")])
    fh = build_features(hours, funding, cfg=cfg, interval="1h")
    at = fh.index[lp.long_warm_rows - 2:]
    fc = [LongPredictor(tiny_long).predict(fh.loc[:h]) for h in at]
    assert {p.source for p in fc} == {"model"}
    ss = SignalSettings.from_config(cfg)
    view = long_view(long_targets(pd.DataFrame({"mean": [p.mean for p in fc], "std": [p.std for p in fc], "skew": [p.skew for p in fc]}, at), ss), idx)
    w = lp.warm_rows
    feats = build_features(minutes.iloc[i0 - w:i0 + n], funding)
    p = ShortPredictor(d / "short", d / "baseline").predict(feats, times=idx)
    side = pd.Series(np.array([-1.0, 0.0, 1.0])[p.proba.argmax(1)], idx) # down, neutral, up
    need = pd.Series(lp.predictor.model.meta["confidence_threshold"], idx) # research.combined.short_threshold unset: the model's own
    lev = time_entries(view, idx, ss, side, pd.Series(p.confidence, idx), threshold=need)
    np.testing.assert_array_equal([x.long_view for x in ds], view.to_numpy())
    assert [x.leverage for x in ds] == lev.tolist()
    assert (lev != 0).any() and (lev != view.fillna(0)).any() and len(set(np.sign(view.dropna()))) > 1, "views both ways, entries timed"
    sizer = PositionSizer(cfg)
    assert [x.want_qty for x in ds] == [float(sizer.finish(l * x.equity / c, x.equity, c)) if l else 0.0 for x, l, c in zip(ds, lev, minutes.close.iloc[i0:i0 + n])]
    assert any(x.order_qty for x in ds)
    expo = lp.metrics.exposition().decode()
    assert 'btcfut_predictions_total{model="long",source="model"} 25.0' in expo and 'model="long"' not in expo.split("btcfut_fallbacks_total")[-1]

# --- breakers fed by the exchange: error rate, 418, position mismatch -----------------------------------------------

def _exchange_run(sample, n, faults=(), overrides=None, during=None, speed=600.0):
    "A loop trading on the fake over REST (`BinanceExecutor`; the fake on its own thread) while the fake replays n bars."
    from btcfut.core import Config
    from btcfut.execution.journal import Journal
    from btcfut.live import LiveLoop, _session_executor
    bars, funding = sample
    cfg = Config.load(overrides=overrides or {})
    fx = FakeExchange(MarketData(klines={"1m": bars}, funding=funding), cfg, port=0, weight_window_s=1.0)
    for f in faults: fx.faults.add(**f)
    async def main():
        with fx.running_in_thread():
            fx.set_time(START)
            journal = Journal("sqlite://", cfg=cfg)
            lp = LiveLoop(_session_executor(fx, cfg, journal, START, n, exchange=True), cfg, journal)
            async with aiohttp.ClientSession() as s:
                lp.warm_up(bars_frame(await fetch_bars(s, fx.base_url, "BTCUSDT", "1m", int(time_to_ms(START)) - WARM * M, int(time_to_ms(START)))))
            task = asyncio.create_task(lp.run(fx.ws_url, fx.base_url, until_ms=int(time_to_ms(START)) + (n - 1) * M, check_s=0.05,
                                              backoff=backoff_delays(0.02, 0.1, seed=1)))
            await _connected(fx)
            async def go(): fx.start_replay(START, speed)
            fx.call(go())
            side = asyncio.create_task(during(fx, lp)) if during else None
            await asyncio.wait_for(task, 60)
            try: lp.exchange_qty = lp.executor.position("BTCUSDT")[0] # while the fake still answers
            except Exception: lp.exchange_qty = math.nan # banned
            return lp, (await side if side else None)
    return asyncio.run(main())

def _breaker_line(lp, kind): return f'btcfut_breaker_state{{breaker="{kind}"}} 2.0' in lp.metrics.exposition().decode()

def test_error_rate_breaker_freezes(sample, caplog):
    "Every order refused by the exchange: after `max_errors` the error_rate breaker opens and no order is sent any more."
    with caplog.at_level(logging.WARNING, logger="btcfut"):
        lp, _ = _exchange_run(sample, 20, faults=[{"kind": "error", "path": "/fapi/v1/order", "method": "POST", "status": 400, "code": -2019,
                                                   "msg": "Margin is insufficient."}])
    assert len(lp.journal.rows("order_request")) == lp.breakers.max_errors
    assert lp.breakers["error_rate"].state == 2 and _breaker_line(lp, "error_rate")
    assert any(d.blocked.startswith("breakers: error_rate") for d in lp.decisions)
    assert any(r.getMessage() == "circuit breaker opened" and r.fields["breaker"] == "error_rate" for r in caplog.records)

def test_ip_ban_breaker_stops_traffic(sample):
    "A 418 on an order: ip_ban opens for the ban's Retry-After, nothing more is sent, /readyz says why."
    lp, _ = _exchange_run(sample, 15, faults=[{"kind": "418", "path": "/fapi/v1/order", "method": "POST", "count": 1, "retry_after_s": 30}])
    b = lp.breakers["ip_ban"]
    assert b.state == 2 and "418" in b.reason and "30 s" in b.reason and _breaker_line(lp, "ip_ban")
    assert len(lp.journal.rows("order_request")) == 1 and len(lp.decisions) == 15
    assert any(d.blocked.startswith("account unavailable: TrafficStopped") for d in lp.decisions)
    r = lp.health.readiness()
    assert not r["ready"] and "ip_ban" in r["checks"]["breakers_closed"]["detail"]

def test_position_mismatch_breaker(sample):
    """An order placed on the account behind the loop's back (user stream off): position_mismatch opens, reconciliation fails,
    /readyz fails and no order goes out afterwards."""
    async def manual(fx, lp):
        while lp.stats["bars"] < 8: await asyncio.sleep(0.01)
        st, body, _ = fx.call(fx.request("POST", "/fapi/v1/order", signed=True, symbol="BTCUSDT", side="BUY", type="MARKET",
                                         quantity="0.05", newClientOrderId="manual-1"))
        assert st == 200, body
        return len(lp.journal.rows("order_request"))
    lp, sent = _exchange_run(sample, 25, overrides={"live.user_stream": False, "live.reconcile_every_s": 0.0}, during=manual)
    b = lp.breakers["position_mismatch"]
    assert b.state == 2 and _breaker_line(lp, "position_mismatch"), lp.breakers
    assert not lp.health.reconciled and not lp.health.readiness()["ready"]
    assert "not in the journal" in lp.executor.blocked
    assert len(lp.journal.rows("order_request")) <= sent + 1 # at most the order of the bar being decided
    assert lp.journal.rows("reconcile")[-1]["payload"]["ok"] is False

# --- streams: user data, aggTrades, the 24-hour rollover; a 429 does not stall the reader ----------------------------

def test_rate_limit_wait_does_not_stall_reader(sample):
    """A 429 on an order makes the executor wait its Retry-After (1 s) on the exchange thread; meanwhile klines keep being read.
    The user stream's fills move the local position, which ends equal to the exchange's; aggTrades arrive too; the listen key
    is kept alive."""
    samples, keepalives = [], []
    async def sample_counts(fx, lp):
        ka = lp.executor.client.futures_stream_keepalive
        lp.executor.client.futures_stream_keepalive = lambda key: (keepalives.append(key), ka(key))[1]
        while not lp._stop.is_set():
            samples.append((time.perf_counter(), lp.received["kline"], lp.stats["bars"])); await asyncio.sleep(0.02)
    lp, _ = _exchange_run(sample, 40, faults=[{"kind": "429", "path": "/fapi/v1/order", "method": "POST", "count": 1, "retry_after_s": 1}],
                          overrides={"live.keepalive_s": 0.5}, during=sample_counts)
    assert len(lp.decisions) == 40 and max(d.latency_ms for d in lp.decisions) >= 1000
    assert [r["payload"]["event"] for r in lp.journal.rows("traffic")] == ["429"]
    best = 0 # most klines read while the decision count stood still
    for i, (t, k, b) in enumerate(samples):
        j = max(j for j in range(i, len(samples)) if samples[j][2] == b)
        if samples[j][0] - t >= 0.8: best = max(best, samples[j][1] - k)
    assert best >= 3, samples
    assert lp.received["ORDER_TRADE_UPDATE"] > 0 and lp.received["aggTrade"] > 0
    assert any(r["payload"].get("source") == "user_stream" for r in lp.journal.rows("fill"))
    assert lp.book.qty == lp.exchange_qty and lp.health.reconciled
    assert keepalives and set(keepalives) == {lp._listen_key} # the listen key kept alive, never replaced

def test_rollover_loses_no_bar(sample):
    "The 24-hour rollover shrunk to 0.1 s: many planned reconnects, every bar decided once, none fetched over REST."
    n = 60
    async def main():
        fx = await _fake(sample)
        try:
            lp = await _loop(fx, n)
            lp.rollover_s = 0.1
            task = asyncio.create_task(lp.run(fx.ws_url, fx.base_url, until_ms=int(time_to_ms(START)) + (n - 1) * M, check_s=0.02))
            await _connected(fx) # from the first bar on, every bar comes over a websocket
            fx.start_replay(START, speed=2400.0)
            await asyncio.wait_for(task, 60)
            return lp
        finally: await fx.stop()
    lp = asyncio.run(main())
    bars = sample[0]; i0 = bars.index.get_loc(START)
    assert [d.open_ms for d in lp.decisions] == list(time_to_ms(bars.index[i0:i0 + n]))
    expo = lp.metrics.exposition().decode()
    rolls = [float(l.split()[-1]) for l in expo.splitlines() if l.startswith('btcfut_reconnects_total{stream="rollover"}')]
    assert rolls and rolls[0] >= 5, rolls
    assert 'stream="rest"' not in expo and 'stream="kline"' not in expo

def test_testnet_session_with_long_model(tiny_long):
    """`exchange_session` on the fake's testnet with the long model alone: its hours warmed from the exchange's 1h klines, orders over
    REST, each decision's leverage the long view untimed, the strategy named in the summary and the journal."""
    from btcfut.core import Config
    from btcfut.execution.journal import Journal
    from btcfut.fakex import replay_fake
    from btcfut.live import exchange_session, warm_hours_for
    from btcfut.models.serve import LongPredictor
    chain = LongPredictor(tiny_long, deadline_ms=1e6)
    fx = replay_fake(START, START + pd.Timedelta(hours=1), 600.0, warm=3000, warm_hours=warm_hours_for(chain))
    async def main():
        with fx.running_in_thread():
            fx.set_time(START)
            cfg = Config.load(overrides={"execution.testnet_url": fx.base_url, "execution.testnet_ws_url": fx.ws_url})
            async def go(): fx.start_replay(START, 600.0)
            fx.call(go())
            x = cfg.execution
            return await asyncio.wait_for(exchange_session("testnet", cfg, journal=Journal("sqlite://", cfg=cfg), long_model=chain, max_bars=5,
                                                           env={x.key_env: fx.api_key, x.secret_env: fx.api_secret}), 60)
    lp = asyncio.run(main())
    ds, s = list(lp.decisions), lp.summary
    assert not any(t.is_alive() for t in lp._pool._threads | lp._long_pool._threads), "the session shuts the exchange thread and the long worker"
    assert s["strategy"] == "long" and {r["payload"]["strategy"] for r in lp.journal.rows("decision") if "signal" in r["payload"]} == {"long"}
    assert lp.long_warm_rows == warm_hours_for(chain) and len(ds) >= 5 and s["long"]["sources"] == {"model": 2} # 03:00 and 04:00
    assert [d.leverage for d in ds] == [0.0 if math.isnan(d.long_view) else d.long_view for d in ds] and {d.source for d in ds} == {"long"}
    assert not math.isnan(ds[0].long_view) and lp.health.reconciled

def test_long_forecasts_scored_when_their_horizon_passes(tiny_long):
    "Each hour's forecast is scored against the log return to the close a horizon (24 h here) later: the coverage gauges move; closes kept stay bounded."
    from btcfut.live import LongCall, long_predictor
    lp = paper_loop(START, capacity=5, long_predictor=long_predictor(tiny_long))
    H, q = 3_600_000, {0.1: -0.02, 0.5: 0.0, 0.9: 0.03} # a 24-hour rise of 2.4%: below the 90% quantile, above the others
    for k in range(30): lp._took_long(LongCall(k * H, 100.0 * 1.001 ** k, 0.5, "model", [], 0.01, q))
    assert lp.metrics.long_quality.coverage() == {0.1: 0.0, 0.5: 0.0, 0.9: 1.0} and len(lp._long_closes) == 24
    assert 'btcfut_long_quantile_coverage_ratio{quantile="0.9"} 1.0' in lp.metrics.exposition().decode()

def test_paper_command_with_long_model(tiny_long):
    "`btcfut paper --replay ... --long-model DIR`: the fake serves the 1h warm-up, the long model alone trades, the summary names the strategy."
    import json
    from typer.testing import CliRunner
    from btcfut.cli import app
    r = CliRunner().invoke(app, ["paper", "--replay", "2023-08-01 05:00", "2023-08-01 05:15", "--speed", "1200", "--long-model", str(tiny_long),
                                 "--journal", "sqlite://", "--port", "0"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output.strip().splitlines()[-1])
    assert (s["strategy"], s["bars"], s["long"]["sources"]) == ("long", 15, {"model": 2}) and r.output.splitlines()[-2].startswith("long: 15 bars decided")
