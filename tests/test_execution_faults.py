"""The fault matrix of the exchange backend: each case against the fake exchange over loopback, python-binance in between."""
import logging, math, re, time
from contextlib import contextmanager
import pytest
from btcfut.core import Config
from btcfut.execution import (BinanceExecutor, EventKind, Journal, OrderRefused, OrderRequest, OrderState, OrderType,
                              TrafficStopped, client_order_id, reconcile)
from btcfut.fakex import FakeExchange, MarketData
import btcfut.fakex.answers # noqa: F401  (lose_answer)

KEY, SECRET = "KEY-a1b2c3d4e5f6a7b8c9", "SECRET-0f1e2d3c4b5a69788796"
CFG = dict(**{"exchange.recv_window_ms": 1000, "execution.timeout_s": 0.6, "execution.lookup_backoff_s": 0.05})

@contextmanager
def venue(tmp_path, cfg_overrides=None, **fake):
    "A fake exchange in a thread and a testnet executor pointed at it, journaling to SQLite under tmp_path."
    fx = FakeExchange(MarketData.synthetic(periods=300), port=0, api_key=KEY, api_secret=SECRET, **fake)
    cfg = Config.load(overrides={**CFG, **(cfg_overrides or {})})
    with fx.running_in_thread():
        ex = BinanceExecutor("testnet", Journal(f"sqlite:///{tmp_path}/journal.sqlite", cfg=cfg), cfg, fx.base_url,
                             env={"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET})
        ex.connect("BTCUSDT")
        yield fx, ex

def order(intent="entry", qty=0.01, side="BUY", **kw):
    return OrderRequest("BTCUSDT", side, kw.pop("type", "MARKET"), qty, client_id=client_order_id("faults", 1_738_400_000_000, intent), **kw)

def kinds(ex, cid): return [r["kind"] for r in ex.journal.rows(client_id=cid)]
def on_book(fx, cid): return [o for o in fx.orders.values() if o.client_id == cid]

def test_5xx_before_the_book_then_resend_same_id(tmp_path):
    with venue(tmp_path) as (fx, ex):
        fx.faults.add("5xx", "/fapi/v1/order", method="POST", count=1)
        r = order()
        rep = ex.place(r)
        assert rep.state == OrderState.NOT_FOUND and on_book(fx, r.client_id) == [] # looked up after recvWindow: never placed
        rep2 = ex.place(r) # the same decision sent again, same client id
        assert rep2.state == OrderState.FILLED and len(on_book(fx, r.client_id)) == 1
        assert kinds(ex, r.client_id) == ["order_request", "order_unknown", "order_lookup", "order_lookup", "order_request", "order_answer"]

def test_5xx_after_the_book_is_found_not_resent(tmp_path):
    with venue(tmp_path) as (fx, ex):
        fx.lose_answer("POST", "/fapi/v1/order")
        r = order()
        assert ex.place(r).state == OrderState.FILLED
        assert ex.place(r).state == OrderState.FILLED # retried decision: looked up, not sent
        assert len(on_book(fx, r.client_id)) == 1 and len(fx.orders) == 1 and ex.position("BTCUSDT")[0] == 0.01

def test_timeout_order_arrives_late_within_recv_window(tmp_path):
    with venue(tmp_path, {"exchange.recv_window_ms": 3000}) as (fx, ex):
        fx.faults.add("timeout", "/fapi/v1/order", method="POST", count=1, delay_s=1.2)
        r = order()
        rep = ex.place(r)
        assert rep.state == OrderState.FILLED and len(fx.orders) == 1
        assert "order_unknown" in kinds(ex, r.client_id)

def test_timeout_order_arrives_after_recv_window_is_refused_by_the_exchange(tmp_path):
    with venue(tmp_path) as (fx, ex):
        fx.faults.add("timeout", "/fapi/v1/order", method="POST", count=1, delay_s=1.8)
        r = order()
        rep = ex.place(r)
        time.sleep(0.5) # let the delayed request reach the fake: it is refused (-1021), never placed
        assert rep.state == OrderState.NOT_FOUND and fx.orders == {}
        assert ex.place(r).state == OrderState.FILLED and len(fx.orders) == 1

def test_lookups_exhausted_fail_closed(tmp_path):
    with venue(tmp_path, {"execution.lookups": 2}) as (fx, ex):
        fx.faults.add("5xx", "/fapi/v1/order", count=3) # the placement and both lookups
        r = order()
        assert ex.place(r).state == OrderState.UNKNOWN and ex.unresolved == {r.client_id}
        with pytest.raises(OrderRefused, match="IN_FLIGHT"): ex.place(order("other"))
        assert ex.place(r).state == OrderState.FILLED and len(fx.orders) == 1 # its own retry may go: looked up, not found, sent
        assert ex.unresolved == set()

def test_clock_error_resyncs(tmp_path):
    with venue(tmp_path, time_offset_ms=20_000) as (fx, ex): # the server clock 20 s ahead of ours
        rep = ex.place(order())
        assert rep.state == OrderState.FILLED and abs(ex.client.timestamp_offset - 20_000) < 2_000
        assert [r["payload"]["event"] for r in ex.journal.rows("traffic")] == ["clock_resync"]

def test_429_storm_honours_retry_after(tmp_path):
    with venue(tmp_path) as (fx, ex):
        fx.faults.add("429", "/fapi/v1/order", method="POST", count=3, retry_after_s=1)
        t0 = time.monotonic(); rep = ex.place(order())
        assert rep.state == OrderState.FILLED and time.monotonic() - t0 >= 3.0
        assert fx.status_counts.get(429) == 3 and 418 not in fx.status_counts and fx._violations == 0
        assert len(ex.journal.rows("traffic")) == 3

def test_418_stops_all_order_traffic(tmp_path):
    with venue(tmp_path) as (fx, ex):
        fx.faults.add("418", "/fapi/v1/order", method="POST", count=1, retry_after_s=60)
        with pytest.raises(TrafficStopped): ex.place(order())
        n = fx.meter.requests
        with pytest.raises(OrderRefused, match="TRAFFIC_STOPPED"): ex.place(order("again"))
        assert fx.meter.requests == n # nothing sent

def test_bad_input_refused_nothing_sent(tmp_path):
    with venue(tmp_path) as (fx, ex):
        cases = {"SYMBOL": OrderRequest("DOGEUSDT", "BUY", "MARKET", 1.0, client_id="btf-a"),
                 "MIN_NOTIONAL": order(qty=0.001),
                 "PRICE_FILTER": order(type="LIMIT", price=40_000.05),
                 "REDUCE_ONLY": order(reduce_only=True)}
        for name, r in cases.items():
            with pytest.raises(OrderRefused, match=name): ex.place(r)
        assert fx.orders == {} and [r["payload"]["filter"] for r in ex.journal.rows("order_refused")] == list(cases)

def test_no_secret_written_anywhere(tmp_path, caplog):
    "With keys set, every fault path runs; no log line, journal row or error message holds the key, secret or a signature."
    caplog.set_level(logging.DEBUG)
    errors = []
    with venue(tmp_path) as (fx, ex):
        for kind, kw in (("5xx", {}), ("429", {"retry_after_s": 1}), ("-1021", {}), ("timeout", {"delay_s": 0.8})):
            fx.faults.add(kind, "/fapi/v1/order", method="POST", count=1, **kw)
            try: ex.place(order(kind))
            except Exception as e: errors.append(repr(e))
        fx.lose_answer(); ex.place(order("lost"))
        try: ex.place(order("bad", type="LIMIT", price=1.05))
        except Exception as e: errors.append(repr(e))
        fx.faults.add("418", "/fapi/v1/order", count=1)
        try: ex.place(order("ban"))
        except Exception as e: errors.append(repr(e))
        rows = repr(ex.journal.rows())
    files = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    texts = {"journal rows": rows, "journal files": files.decode("latin-1"), "errors": "\n".join(errors),
             "logs": "\n".join(f"{r.name} {r.getMessage()} {r.__dict__.get('fields', '')}" for r in caplog.records)}
    for where, text in texts.items():
        assert KEY not in text and SECRET not in text, where
        assert not re.search(r"signature=[^*]|[0-9a-f]{64}", text), where
    assert len(ex.journal.rows()) > 10

def test_partial_fill_then_cancel(tmp_path):
    with venue(tmp_path) as (fx, ex):
        a = fx.data.arrays("klines", "1h")
        k = next(i for i in range(100, 299) if a["low"][i] < a["close"][i - 1] - 20) # a bar that dips below the last close
        fx.set_time(int(a["t"][k])); fx.fill_limits_in_parts(3)
        r = order("bid", qty=0.03, type="LIMIT", price=math.floor((a["low"][k] + a["close"][k - 1]) / 2 * 10) / 10)
        assert ex.place(r).state == OrderState.NEW
        fx.call(fx.advance(int(a["t"][k]) + 3_600_000)) # one touch: a third fills
        assert ex.query("BTCUSDT", r.client_id, OrderType.LIMIT).state == OrderState.PARTIALLY_FILLED
        rep = ex.cancel("BTCUSDT", r.client_id)
        assert (rep.state, rep.executed_qty) == (OrderState.CANCELED, 0.01)
        rec = reconcile(ex)
        assert rec.ok and rec.inferred_fills == 1 and rec.position_journal == rec.position_exchange == 0.01, rec

def test_exchange_liquidation_mid_position(tmp_path):
    "The fake's liquidation engine closes a 50x long on the mark price; reconciliation adopts its autoclose order and agrees."
    import btcfut.fakex.liquidation # noqa: F401  (the fake liquidates on the mark price)
    with venue(tmp_path, balance=1_000.0) as (fx, ex):
        a = fx.data.arrays("klines", "1h")
        k = next(i for i in range(50, 250) if a["low"][i + 1:i + 40].min() < a["close"][i] * 0.975) # a 2.5% drop follows bar k
        fx.set_time(int(a["t"][k + 1]))
        ex.set_leverage("BTCUSDT", 50)
        assert ex.place(order("entry", qty=round(40_000 / a["close"][k], 3))).state == OrderState.FILLED
        assert reconcile(ex).ok
        fx.call(fx.advance(int(a["t"][k + 40])))
        rec = reconcile(ex)
        assert rec.ok and rec.adopted and rec.adopted[0].startswith("autoclose-"), rec
        assert rec.position_exchange == rec.position_journal == 0.0 and ex.blocked == ""

def test_unexplained_order_blocks_trading(tmp_path):
    with venue(tmp_path) as (fx, ex):
        fx._new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.2", "price": "1000", "timeInForce": "GTC",
                       "newClientOrderId": "web_manual_1"})
        rec = reconcile(ex)
        assert not rec.ok and "web_manual_1" in rec.unexplained[0]
        n = fx.meter.requests
        with pytest.raises(OrderRefused, match="RECONCILE.*web_manual_1"): ex.place(order())
        assert fx.meter.requests == n
        fx.call(fx.request("DELETE", "/fapi/v1/order", signed=True, symbol="BTCUSDT", origClientOrderId="web_manual_1"))
        assert reconcile(ex).ok and ex.place(order()).state == OrderState.FILLED # explained again: trading resumes

def _wait_for(cond, timeout=10.0):
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout: time.sleep(0.02)
    return cond()

def test_websocket_drop_mid_trading_loses_no_fill(tmp_path):
    from btcfut.execution import UserStream, journal_position
    with venue(tmp_path) as (fx, ex):
        fx.set_time(fx.data.arrays("klines", "1h")["t"][100])
        us = UserStream(ex, fx.ws_url).start()
        try:
            assert _wait_for(lambda: us.connects == 1)
            ex.place(order("entry", qty=0.02)); fx.call(fx.advance(fx.cursor_ms + 60_000))
            assert _wait_for(lambda: len(ex.journal.rows("fill")) == 1) # pushed by the stream
            fx.faults.add("drop_ws", "/ws/*", count=1, delay_s=0.0) # the reconnection is cut at once, too
            fx.drop_websockets()
            ex.place(order("exit", qty=0.01, side="SELL")); fx.call(fx.advance(fx.cursor_ms + 60_000)) # its event is lost
            assert _wait_for(lambda: us.connects >= 3 and len(ex.journal.rows("fill")) == 2, timeout=20)
            rec = reconcile(ex)
        finally: us.stop()
        assert rec.ok and rec.inferred_fills == 0 and journal_position(ex.journal, "BTCUSDT") == rec.position_exchange == 0.01
        assert KEY not in repr(ex.journal.rows()) and not any(k in repr(ex.journal.rows()) for k in fx.listen_keys)

def test_listen_key_expiry_mid_trading_loses_no_fill(tmp_path):
    from btcfut.execution import UserStream, journal_position
    with venue(tmp_path) as (fx, ex):
        fx.set_time(fx.data.arrays("klines", "1h")["t"][100])
        us = UserStream(ex, fx.ws_url).start()
        try:
            assert _wait_for(lambda: us.connects == 1)
            ex.place(order("entry", qty=0.02)); fx.call(fx.advance(fx.cursor_ms + 60_000))
            assert _wait_for(lambda: len(ex.journal.rows("fill")) == 1)
            # the key expires and a fill happens before the stream has a new key: its event goes nowhere
            fx.call(fx.expire_listen_key())
            ex.place(order("exit", qty=0.01, side="SELL")); fx.call(fx.advance(fx.cursor_ms + 60_000))
            assert _wait_for(lambda: us.expired == 1 and us.connects == 2 and len(ex.journal.rows("fill")) == 2)
            rec = reconcile(ex)
        finally: us.stop()
        assert rec.ok and rec.inferred_fills == 0 and journal_position(ex.journal, "BTCUSDT") == rec.position_exchange == 0.01
