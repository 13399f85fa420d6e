"""The fake exchange over loopback: Binance shapes, signatures, limits, faults, orders, websocket streams, archive files.

Real clients only (aiohttp, python-binance through test_client.py); data = the bundled real BTCUSDT store where it matters.
"""
import asyncio, json, os, socket, subprocess, sys, time
from pathlib import Path
import aiohttp
import numpy as np
import pandas as pd
import pytest
from btcfut.core import time_to_ms
from btcfut.data.archive import shared_archive_dir
from btcfut.data.store import DataManager
from btcfut.fakex import FakeExchange, MarketData, sign_params

SHARED = shared_archive_dir() or Path("shared-archive-not-found")  # shared/data/binance beside the checkout or above it


async def get(fx, path, status=200, **params):
    async with aiohttp.ClientSession() as s, s.get(fx.base_url + path, params=params) as r:
        body = await r.json(content_type=None)
        assert r.status == status, (r.status, body)
        return body, r.headers


async def signed(fx, method, path, key=None, secret=None, ts=None, **params):
    params["timestamp"] = fx.server_ms() if ts is None else ts
    q = "&".join(f"{k}={v}" for k, v in params.items())
    q += "&signature=" + sign_params(secret or fx.api_secret, q)
    async with aiohttp.ClientSession() as s, s.request(method, f"{fx.base_url}{path}?{q}", headers={"X-MBX-APIKEY": key or fx.api_key}) as r:
        return r.status, await r.json()


async def order(fx, **p):
    return await signed(fx, "POST", "/fapi/v1/order", symbol="BTCUSDT", **p)


# ---- market data ---------------------------------------------------------------------------------------------------
async def test_klines_shape_and_paging_semantics(fakex, real_market_data):
    src = real_market_data.bars("klines", "1h")
    t = time_to_ms(src.index)
    rows, h = await get(fakex, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", startTime=int(t[100]), limit=2000)
    assert len(rows) == 1500 and rows[0][0] == t[100] and h["X-MBX-USED-WEIGHT-1M"] == "10"
    r = rows[0]
    assert len(r) == 12 and all(isinstance(r[i], str) for i in (1, 2, 3, 4, 5)) and r[6] == r[0] + 3_599_999 and r[11] == "0"
    assert float(r[4]) == src["close"].iloc[100]
    rows, _ = await get(fakex, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", endTime=int(t[1000]))
    assert len(rows) == 500 and rows[-1][0] == t[1000] # endTime alone: the last `limit` bars up to it; default limit 500
    rows, _ = await get(fakex, "/fapi/v1/klines", symbol="BTCUSDT", interval="1h", startTime=int(t[5]), endTime=int(t[7]))
    assert [x[0] for x in rows] == list(t[5:8]) # both inclusive
    err, _ = await get(fakex, "/fapi/v1/klines", 400, symbol="BTCUSDT", interval="1h", startTime=int(t[7]), endTime=int(t[5]))
    assert err["code"] == -1023
    err, _ = await get(fakex, "/fapi/v1/klines", 400, symbol="ETHUSDT", interval="1h")
    assert err == {"code": -1121, "msg": "Invalid symbol."}
    err, _ = await get(fakex, "/fapi/v1/klines", 400, symbol="BTCUSDT")
    assert err["code"] == -1102 and "interval" in err["msg"]


async def test_other_intervals_are_exact_resamples(fakex, real_market_data):
    rows, _ = await get(fakex, "/fapi/v1/klines", symbol="BTCUSDT", interval="4h", startTime=1704067200000, limit=6)
    ref = DataManager().load("klines", "BTCUSDT", "4h", "2024-01-01", "2024-01-02")
    assert [float(r[2]) for r in rows] == list(ref["high"]) and [float(r[5]) for r in rows] == list(ref["volume"])
    rows, _ = await get(fakex, "/fapi/v1/klines", symbol="BTCUSDT", interval="1m", limit=5)
    assert rows == [] # finer than the data set: nothing is invented


async def test_funding_mark_premium_book_trades(fakex, real_market_data):
    f, _ = await get(fakex, "/fapi/v1/fundingRate", symbol="BTCUSDT", startTime=1704067200000, limit=3)
    src = real_market_data.funding.loc["2024-01-01":].iloc[:3]
    assert [x["fundingTime"] for x in f] == list(time_to_ms(src.index)) and [float(x["fundingRate"]) for x in f] == list(src["funding_rate"])
    pi, _ = await get(fakex, "/fapi/v1/premiumIndex", symbol="BTCUSDT")
    assert set(pi) >= {"markPrice", "indexPrice", "lastFundingRate", "nextFundingTime", "time"}
    before = fakex.meter.weight.get(fakex.meter.window(), 0)
    book, h = await get(fakex, "/fapi/v1/depth", symbol="BTCUSDT", limit=1000)
    assert int(h["X-MBX-USED-WEIGHT-1M"]) == before + 20 and len(book["bids"]) == 1000 and float(book["bids"][0][0]) < float(book["asks"][0][0])
    again, _ = await get(fakex, "/fapi/v1/depth", symbol="BTCUSDT", limit=1000)
    assert again == book # deterministic
    tr, _ = await get(fakex, "/fapi/v1/trades", symbol="BTCUSDT", limit=10)
    agg, _ = await get(fakex, "/fapi/v1/aggTrades", symbol="BTCUSDT", startTime=1704067200000, endTime=1704070799999)
    assert len(tr) == 10 and [a["T"] for a in agg] == sorted(a["T"] for a in agg) and len(agg) == 4
    err, _ = await get(fakex, "/fapi/v1/aggTrades", 400, symbol="BTCUSDT", startTime=1704067200000, endTime=1704067200000 + 7_200_000)
    assert err["code"] == -1127
    oi, _ = await get(fakex, "/futures/data/openInterestHist", symbol="BTCUSDT", period="5m", limit=500)
    assert len(oi) == 500 and all(float(x["sumOpenInterest"]) > 0 for x in oi)
    info, _ = await get(fakex, "/fapi/v1/exchangeInfo")
    assert info["symbols"][0]["symbol"] == "BTCUSDT" and info["rateLimits"][0]["limit"] == 2400


# ---- signatures and limits ------------------------------------------------------------------------------------------
async def test_signature_key_and_timestamp_checks(fakex):
    assert (await signed(fakex, "GET", "/fapi/v2/balance"))[0] == 200
    assert await signed(fakex, "GET", "/fapi/v2/balance", secret="nope") == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert (await signed(fakex, "GET", "/fapi/v2/balance", key="other"))[1]["code"] == -2015
    assert (await signed(fakex, "GET", "/fapi/v2/balance", ts=fakex.server_ms() - 10_000))[1]["code"] == -1021
    assert (await signed(fakex, "GET", "/fapi/v2/balance", ts=fakex.server_ms() + 5_000))[1]["code"] == -1021
    body, _ = await get(fakex, "/fapi/v2/balance", 401)
    assert body["code"] == -2014


async def test_weight_limit_429_then_418_for_ignoring_it(real_market_data):
    async with FakeExchange(real_market_data, port=0, weight_limit=30, weight_window_s=60.0, retry_grace_s=0.0, ban_after_violations=2) as fx:
        got = []
        async with aiohttp.ClientSession() as s:
            for _ in range(5): # depth with limit 1000 weighs 20
                async with s.get(fx.base_url + "/fapi/v1/depth", params={"symbol": "BTCUSDT", "limit": 1000}) as r:
                    got.append((r.status, r.headers.get("Retry-After"), r.headers.get("X-MBX-USED-WEIGHT-1M"), (await r.json())))
    assert got[0][:3] == (200, None, "20")
    assert got[1][0] == 429 and 1 <= int(got[1][1]) <= 60 and got[1][2] == "40" and got[1][3]["code"] == -1003 # the window's end
    assert got[2][0] == 429 # came back before Retry-After: still limited
    assert got[3][:2] == (418, "120") and "banned until" in got[3][3]["msg"] and got[4][0] == 418


async def test_fault_control_endpoint_and_state(fakex):
    async with aiohttp.ClientSession() as s:
        async with s.post(fakex.base_url + "/_fakex/faults", json={"kind": "5xx", "path": "/fapi/v1/ping", "count": 2, "status": 503}) as r:
            assert r.status == 200
        async with s.post(fakex.base_url + "/_fakex/faults", json={"kind": "bogus"}) as r:
            assert r.status == 400 and "unknown fault kind" in (await r.json())["msg"]
        statuses = []
        for _ in range(3):
            async with s.get(fakex.base_url + "/fapi/v1/ping") as r: statuses.append(r.status)
        async with s.get(fakex.base_url + "/_fakex/state") as r: st = await r.json()
    assert statuses == [503, 503, 200] and st["status_counts"]["503"] == 2 and st["requests"] == 3


async def test_malformed_and_truncated_bodies(fakex):
    fakex.faults.add("malformed", "/fapi/v1/time", count=1)
    fakex.faults.add("truncate", "/fapi/v1/exchangeInfo", count=1)
    async with aiohttp.ClientSession() as s:
        async with s.get(fakex.base_url + "/fapi/v1/time") as r:
            with pytest.raises(json.JSONDecodeError): json.loads(await r.text())
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.get(fakex.base_url + "/fapi/v1/exchangeInfo") as r: await r.read()


# ---- orders -----------------------------------------------------------------------------------------------------------
async def test_orders_fill_against_the_price_path(fakex, real_market_data):
    bars = real_market_data.bars("klines", "1h")
    a, b = -8000, -7800 # mid 2024, price about 60k
    fakex.set_time(bars.index[a])
    last = fakex.last_price()
    assert last == bars["close"].iloc[a - 1]
    st, o = await order(fakex, side="BUY", type="MARKET", quantity="0.010", newClientOrderId="t-1")
    assert st == 200 and o["status"] == "FILLED" and float(o["avgPrice"]) == last
    wallet = fakex.account.wallet
    assert abs(wallet - (10_000 - 0.01 * last * 0.0005)) < 1e-9 # taker fee
    below = round(bars["low"].iloc[a:b].min() + 1.0, 1)
    st, lim = await order(fakex, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=str(below))
    assert lim["status"] == "NEW"
    st, sl = await order(fakex, side="SELL", type="STOP_MARKET", stopPrice=str(round(last * 0.5, 1)), closePosition="true")
    assert sl["status"] == "NEW"
    assert (await order(fakex, side="BUY", type="STOP_MARKET", stopPrice=str(round(last * 0.9, 1)), quantity="0.01"))[1]["code"] == -2021
    assert (await order(fakex, side="BUY", type="MARKET", quantity="0.001"))[1]["code"] == -4164 # notional < 100
    assert (await order(fakex, side="BUY", type="MARKET", quantity="0.0101"))[1]["code"] == -1111
    assert (await order(fakex, side="BUY", type="MARKET", quantity="0.01", reduceOnly="true"))[1]["code"] == -2022
    assert (await order(fakex, side="BUY", type="MARKET", quantity="100"))[1]["code"] == -2019
    assert (await order(fakex, side="BUY", type="MARKET", quantity="0.01", newClientOrderId="bad id!"))[1]["code"] == -1100
    await fakex.advance(bars.index[b])
    got = fakex.orders[lim["orderId"]]
    assert got.status == "FILLED" and got.avg_price == below and fakex.account.qty == 0.02
    assert fakex.orders[sl["orderId"]].status == "NEW" # never reached
    assert fakex.account.funding != 0 # funding events passed while holding
    st, inc = await signed(fakex, "GET", "/fapi/v1/income", incomeType="FUNDING_FEE", limit=1000)
    assert abs(sum(float(i["income"]) for i in inc) + fakex.account.funding) < 1e-6 and len(inc) > 10
    st, pos = await signed(fakex, "GET", "/fapi/v2/positionRisk", symbol="BTCUSDT")
    assert float(pos[0]["positionAmt"]) == 0.02 and pos[0]["liquidationPrice"] == "0" # cross, wallet covers any move down
    st, q = await signed(fakex, "GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="t-1")
    assert q["orderId"] == o["orderId"]
    assert (await signed(fakex, "GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="nope"))[1]["code"] == -2013
    st, c = await signed(fakex, "DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=sl["orderId"])
    assert c["status"] == "CANCELED"
    assert (await signed(fakex, "DELETE", "/fapi/v1/order", symbol="BTCUSDT", orderId=sl["orderId"]))[1]["code"] == -2011


async def test_stop_triggers_at_stop_or_gap_open():
    md = MarketData.synthetic(periods=300, seed=5)
    bars = md.bars("klines", "1h")
    async with FakeExchange(md, port=0) as fx:
        fx.set_time(bars.index[100])
        await order(fx, side="BUY", type="MARKET", quantity="0.01")
        stop = round(fx.last_price() * 0.995, 1)
        st, o = await order(fx, side="SELL", type="STOP_MARKET", stopPrice=str(stop), closePosition="true")
        await fx.advance(bars.index[-1])
        hit = fx.orders[o["orderId"]]
        i = int(np.argmax((bars["low"].iloc[100:] <= stop).to_numpy())) + 100 # first bar whose low reaches the stop
        assert hit.status == "FILLED" and hit.avg_price == min(stop, bars["open"].iloc[i]) and fx.account.qty == 0


# ---- websocket ----------------------------------------------------------------------------------------------------------
async def test_combined_streams_replay_the_data(fakex, real_market_data):
    bars = real_market_data.bars("klines", "1h")
    fakex.set_time(bars.index[-10])
    names = "btcusdt@kline_1h/btcusdt@markPrice@1s/btcusdt@aggTrade/btcusdt@depth"
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{fakex.ws_url}/stream?streams={names}") as ws:
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 7})
        assert (await ws.receive_json(timeout=2))["result"] == names.split("/")
        await fakex.advance(bars.index[-7]) # three bars close: 10-8, 9-7 ... the bars opening at -10, -9, -8
        msgs = [await ws.receive_json(timeout=2) for _ in range(3 + 3 + 12 + 3)]
    by = {}
    for m in msgs: by.setdefault(m["stream"].split("@")[1], []).append(m["data"])
    k = [d["k"] for d in by["kline_1h"]]
    assert [x["t"] for x in k] == list(time_to_ms(bars.index[-10:-7])) and all(x["x"] for x in k)
    assert [float(x["c"]) for x in k] == list(bars["close"].iloc[-10:-7])
    assert len(by["aggTrade"]) == 12 and len(by["markPrice"]) == 3 and by["depth"][1]["pu"] == by["depth"][0]["u"]


async def test_replay_at_speed_and_dropped_websocket(real_market_data):
    bars = real_market_data.bars("klines", "1h")
    async with FakeExchange(real_market_data, port=0) as fx:
        fx.faults.add("drop_ws", "/ws/*", count=1, delay_s=0.4)
        async with aiohttp.ClientSession() as s, s.ws_connect(f"{fx.ws_url}/ws/btcusdt@kline_1h") as ws:
            fx.start_replay(bars.index[-100], speed=3600 * 50) # 50 bars per second
            got = []
            async for m in ws:
                if m.type != aiohttp.WSMsgType.TEXT: break
                got.append(json.loads(m.data))
            assert ws.closed and 5 <= len(got) <= 40 # cut without a close frame after ~0.4 s
            assert [g["k"]["t"] for g in got] == list(time_to_ms(bars.index[-100:-100 + len(got)]))


async def test_user_data_stream_reports_fills(fakex):
    async with aiohttp.ClientSession() as s:
        async with s.post(fakex.base_url + "/fapi/v1/listenKey", headers={"X-MBX-APIKEY": fakex.api_key}) as r:
            lk = (await r.json())["listenKey"]
        async with s.ws_connect(f"{fakex.ws_url}/ws/{lk}") as ws:
            await order(fakex, side="SELL", type="MARKET", quantity="0.01")
            await fakex.advance(fakex.cursor_ms + 1)
            events = [await ws.receive_json(timeout=2) for _ in range(3)]
    assert [e["e"] for e in events] == ["ORDER_TRADE_UPDATE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    assert events[1]["o"]["X"] == "FILLED" and events[2]["a"]["P"][0]["pa"] == "-0.01"


# ---- archive files ------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "futures").exists(), reason="shared archive (shared/data/binance) not found beside the checkout or above it")
async def test_archive_route_with_ranges():
    rel = "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip"
    data = (SHARED / rel).read_bytes()
    async with FakeExchange(MarketData.synthetic(periods=50), port=0, archive_root=SHARED) as fx, aiohttp.ClientSession() as s:
        async with s.get(f"{fx.base_url}/data/{rel}") as r: assert r.status == 200 and await r.read() == data
        async with s.get(f"{fx.base_url}/data/{rel}", headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206 and await r.read() == data[10:20] and r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        async with s.get(f"{fx.base_url}/data/{rel}", headers={"Range": "bytes=100-"}) as r: assert await r.read() == data[100:]
        async with s.get(f"{fx.base_url}/data/{rel}", headers={"Range": "bytes=-5"}) as r: assert await r.read() == data[-5:]
        async with s.get(f"{fx.base_url}/data/{rel}", headers={"Range": f"bytes={len(data)}-"}) as r: assert r.status == 416
        async with s.head(f"{fx.base_url}/data/{rel}") as r: assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
        async with s.get(f"{fx.base_url}/data/{rel}.CHECKSUM") as r: assert r.status == 200
        async with s.get(f"{fx.base_url}/data/futures/um/nope.zip") as r: assert r.status == 404
        async with s.get(f"{fx.base_url}/data/..%2F..%2Fetc%2Fpasswd") as r: assert r.status == 404


# ---- the process ---------------------------------------------------------------------------------------------------------
def test_serve_runs_as_a_process():
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]
    code = f"from btcfut.fakex import serve; serve(port={port}, synthetic=True)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = p.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/ping", timeout=5) as r: assert r.status == 200
    finally:
        p.terminate(); p.wait(10)


@pytest.mark.skipif(not (SHARED / "stream").exists(), reason="shared stream capture (shared/data/binance/stream) not found beside the checkout or above it")
async def test_recorded_capture_replays_a_consistent_order_book():
    "Binance's diff-depth sync rules hold on the replayed real capture: snapshot, then an unbroken pu → u chain."
    async with FakeExchange(MarketData.synthetic(periods=50), port=0, capture=SHARED / "stream" / "btcusdt_20240808.gz",
                            capture_speed=0.0) as fx, aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{fx.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@trade") as ws:
            depth, trades = [], 0
            while len(depth) < 1500:
                m = await ws.receive_json(timeout=5)
                if m["stream"] == "btcusdt@depth@100ms": depth.append(m["data"])
                else: trades += 1
        snap, _ = await get(fx, "/fapi/v1/depth", symbol="BTCUSDT", limit=1000)
    assert trades > 0 and len(snap["bids"]) == len(snap["asks"]) == 1000
    live = [d for d in depth if d["u"] >= snap["lastUpdateId"]]
    assert live[0]["U"] <= snap["lastUpdateId"] <= live[0]["u"]
    assert all(b["pu"] == a["u"] for a, b in zip(live, live[1:]))
    book = {side: {float(p): float(q) for p, q in snap[side]} for side in ("bids", "asks")}
    for d in live:
        for side, key in (("bids", "b"), ("asks", "a")):
            for p, q in d[key]:
                if float(q) == 0: book[side].pop(float(p), None)
                else: book[side][float(p)] = float(q)
    assert max(book["bids"]) < min(book["asks"]) # never crossed


async def test_order_rate_limit(real_market_data):
    async with FakeExchange(real_market_data, port=0, order_limit_10s=3, retry_grace_s=10.0) as fx:
        got = [await order(fx, side="BUY" if i % 2 == 0 else "SELL", type="MARKET", quantity="0.01") for i in range(4)]
        st, _ = await signed(fx, "GET", "/fapi/v1/openOrders", symbol="BTCUSDT") # any request before Retry-After
    assert [g[0] for g in got] == [200, 200, 200, 429] and got[3][1]["code"] == -1015
    assert st == 429 # within Retry-After, every request is refused (in-flight grace: no ban yet)


# ---- an independent check: the fake's own copies of Binance's rules ------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


def _btcfut_imports(path: Path) -> set[str]:
    "Absolute names of the btcfut modules a file of btcfut/fakex/ imports."
    import ast
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            base = {0: "", 1: "btcfut.fakex.", 2: "btcfut."}[n.level]
            out.add(base + (n.module or ""))
        elif isinstance(n, ast.Import): out |= {a.name for a in n.names}
    return {m for m in out if m.startswith("btcfut")}


def test_fake_imports_neither_the_client_nor_the_engine():
    files = sorted((ROOT / "btcfut" / "fakex").glob("*.py"))
    assert {f.stem for f in files} >= {"__init__", "core", "faults", "market", "streams", "trading"}
    for f in files:
        bad = {m for m in _btcfut_imports(f) if not (m == "btcfut.core" or m.startswith(("btcfut.fakex", "btcfut.data.store")))}
        assert not bad, f"{f.name} imports {bad}: the fake may use core and the store only"


def test_request_weights_agree_with_the_clients_table():
    "Two transcriptions of Binance's weight table: the client's (to budget) and the fake's (to meter)."
    from btcfut.data.client import REQUEST_WEIGHTS, request_weight
    from btcfut.fakex.core import ENDPOINTS
    api = {(m, p): ep for (m, p), ep in ENDPOINTS.items() if p.startswith(("/fapi/", "/futures/data/"))}
    assert {p for _, p in api} == set(REQUEST_WEIGHTS)
    for (m, p), ep in api.items():
        for params in ({}, {"limit": "5"}, {"limit": "99"}, {"limit": "100"}, {"limit": "499"}, {"limit": "500"},
                       {"limit": "1000"}, {"limit": "1500"}, {"symbol": "BTCUSDT"}, {"limit": "x"}):
            assert ep.weight_of(params) == request_weight(p, params), (m, p, params)


def test_brackets_and_liquidation_agree_with_risk():
    "Binance's bracket table and cross liquidation formula, kept apart in the fake and in btcfut.risk, give the same numbers."
    from btcfut.risk import BTCUSDT_BRACKETS_2024_10, LeverageBrackets, liquidation_price
    from btcfut.fakex.trading import BTCUSDT_LEVERAGE_BRACKETS, cross_liquidation_price, max_notional
    assert BTCUSDT_LEVERAGE_BRACKETS == BTCUSDT_BRACKETS_2024_10["brackets"]
    b = LeverageBrackets.from_response(BTCUSDT_BRACKETS_2024_10)
    assert [max_notional(lev) for lev in range(1, 126)] == [float(b.max_notional(lev)) for lev in range(1, 126)]
    rng = np.random.default_rng(7)
    for _ in range(3000):
        qty = float(np.round(rng.choice([-1, 1]) * 10 ** rng.uniform(-3, 4.2), 3)) or 0.001
        entry, wallet = float(rng.uniform(3_000, 150_000)), float(10 ** rng.uniform(0, 8.5))
        want = float(liquidation_price(1 if qty > 0 else -1, abs(qty), entry, wallet_balance=wallet, margin_type="cross"))
        assert cross_liquidation_price(qty, entry, wallet) == pytest.approx(want, rel=1e-12, abs=1e-9), (qty, entry, wallet)
