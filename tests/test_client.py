"""BinanceDataClient against the in-process fake exchange (loopback only), on the bundled real BTCUSDT data.

Covers: two years of 1h klines fetched page by page equal the source frame exactly; every injected fault either
recovers with the complete frame (no duplicate, no missing row) or ends in a clear error; under a 429 storm the
client stays within its weight budget (asserted on the fake's own per-window count) and is never banned;
python-binance works against the fake (klines, signed orders, positions, account).
"""
import asyncio
import pandas as pd
import pytest
from btcfut.data.client import BinanceAPIError, BinanceBanned, BinanceDataClient, BinanceRequestError
from btcfut.fakex import FakeExchange

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05, max_retries=5, timeout_s=2.0)
START, END = "2023-01-01", "2025-01-01"


def client(fx, **kw):
    return BinanceDataClient(base_url=fx.base_url, api_key=fx.api_key, api_secret=fx.api_secret, **{**FAST, **kw})


def source(md, start=START, end=END):
    df = md.bars("klines", "1h")
    return df[(df.index >= pd.Timestamp(start, tz="UTC")) & (df.index < pd.Timestamp(end, tz="UTC"))]


async def test_two_years_of_1h_klines_equal_the_source(fakex, real_market_data):
    async with client(fakex) as c:
        got = await c.klines("BTCUSDT", "1h", START, END)
    src = source(real_market_data)
    assert len(src) == 17_544
    pd.testing.assert_frame_equal(got, src)
    assert fakex.meter.requests == 12 # 17,544 bars / 1500 per page
    assert got["quote_volume"].isna().sum() == src["quote_volume"].isna().sum() > 0 # missing stays missing, never 0


async def test_mark_price_and_funding_equal_the_source(fakex, real_market_data):
    async with client(fakex) as c:
        mark = await c.mark_price_klines("BTCUSDT", "1h", "2024-01-01", "2024-03-01")
        fund = await c.funding_rate("BTCUSDT", "2021-01-01", "2025-01-01")
    m = real_market_data.bars("markPriceKlines", "1h")
    pd.testing.assert_frame_equal(mark, m.loc["2024-01-01":"2024-02-29 23:00"])
    f = real_market_data.funding.loc["2021-01-01":"2024-12-31 23:59"]
    assert len(fund) == len(f) > 4000 # paged at 1000 events
    pd.testing.assert_series_equal(fund["funding_rate"], f["funding_rate"])
    assert (fund["funding_interval_hours"] == f["funding_interval_hours"]).all()


@pytest.mark.parametrize("fault", [
    dict(kind="5xx", count=3, status=503),
    dict(kind="5xx", count=2, status=500),
    dict(kind="timeout", count=2, delay_s=3.0),
    dict(kind="slow", count=3, delay_s=0.2),
    dict(kind="malformed", count=3),
    dict(kind="truncate", count=3),
    dict(kind="429", count=2, retry_after_s=1),
    dict(kind="5xx", probability=0.3, status=502),
], ids=lambda f: "-".join(str(v) for v in f.values()))
async def test_faults_recover_with_complete_frame(fakex, real_market_data, fault):
    fakex.faults.add(path="/fapi/v1/klines", **fault)
    async with client(fakex, timeout_s=0.5, max_retries=8) as c:
        got = await c.klines("BTCUSDT", "1h", START, END)
    assert fakex.faults.rules[0].hits >= 1
    pd.testing.assert_frame_equal(got, source(real_market_data)) # no duplicate, no missing row
    assert c.retries >= fakex.faults.rules[0].hits - (fault["kind"] == "slow") * 3


async def test_faults_that_end_in_a_clear_error(fakex):
    async with client(fakex, max_retries=2) as c:
        fakex.faults.add("5xx", "/fapi/v1/klines", status=502)
        with pytest.raises(BinanceRequestError, match=r"GET /fapi/v1/klines failed 3 times; last: HTTP 502"):
            await c.klines("BTCUSDT", "1h", START, END)
        fakex.faults.clear()
        fakex.faults.add("418", "/fapi/v1/klines", count=1, retry_after_s=30)
        n = fakex.meter.requests
        with pytest.raises(BinanceBanned) as e:
            await c.klines("BTCUSDT", "1h", "2024-01-01", "2024-01-10")
        assert e.value.status == 418 and e.value.retry_after == 30 and fakex.meter.requests == n + 1 # no retry after a ban
        fakex.faults.clear(); fakex._banned_until = 0
        fakex.faults.add("error", "/fapi/v1/klines", count=1, code=-1130, msg="Data sent for parameter 'limit' is not valid.", status=400)
        with pytest.raises(BinanceAPIError) as e:
            await c.klines("BTCUSDT", "1h", "2024-01-01", "2024-01-10")
        assert (e.value.code, e.value.status) == (-1130, 400) and "limit" in e.value.msg and "/fapi/v1/klines" in str(e.value)


async def test_bad_arguments_fail_before_any_request(fakex):
    async with client(fakex) as c:
        for args, msg in [(("BTCUSDT", "7m", START), "unknown interval '7m'"), (("XRPDOGE", "1h", START), "unknown symbol 'XRPDOGE'"),
                          (("BTCUSDT", "1h", END, START), "before start"), (("BTCUSDT", "1h", None), "start is required")]:
            with pytest.raises(ValueError, match=msg): await c.klines(*args)
        with pytest.raises(ValueError, match="open-interest period"): await c.open_interest_hist("BTCUSDT", "3m", START)
        with pytest.raises(ValueError, match="depth limit"): await c.depth("BTCUSDT", 7)
    assert fakex.meter.requests == 0


async def test_signed_request_resyncs_clock_on_1021(real_market_data):
    async with FakeExchange(real_market_data, port=0, time_offset_ms=-20_000) as fx: # exchange clock 20 s behind
        async with client(fx) as c:
            br = await c.leverage_brackets("BTCUSDT")
        assert c.time_offset_ms < -19_000 and fx.status_counts.get(400) == 1 # one -1021, then resynced
    assert list(br["max_leverage"][:3]) == [125, 100, 75] and br.loc[12, "maint_margin_rate"] == 0.5


async def test_429_storm_stays_within_weight_budget(real_market_data):
    "A small window and limit so several windows pass; injected 429s plus the exchange's own limit."
    window, limit = 0.5, 100
    async with FakeExchange(real_market_data, port=0, weight_limit=limit, weight_window_s=window, retry_grace_s=0.2) as fx:
        fx.faults.add("429", "/fapi/v1/klines", count=6, probability=0.4, retry_after_s=1)
        async with client(fx, weight_limit=limit, weight_window_s=window, weight_budget=0.8, page_limit=500, max_retries=10,
                          max_concurrency=4) as c:
            got = await c.klines("BTCUSDT", "1h", "2023-01-01", "2024-01-01") # 18 pages of weight 5
        st = fx.state()
    pd.testing.assert_frame_equal(got, source(real_market_data, "2023-01-01", "2024-01-01"))
    assert fx.faults.rules[0].hits >= 1
    assert st["max_weight"] <= 0.8 * limit, st["weight_by_window"] # never over the client's budget in any window
    assert 418 not in st["status_counts"], st["status_counts"] # never banned: Retry-After honoured
    assert len(st["weight_by_window"]) >= 2


async def test_budget_counts_other_clients_weight(real_market_data):
    "Weight used by someone else on the same IP (seen in X-MBX-USED-WEIGHT-1M) is respected."
    window, limit = 1.0, 100
    async with FakeExchange(real_market_data, port=0, weight_limit=limit, weight_window_s=window) as fx:
        async with client(fx, weight_limit=limit, weight_window_s=window, weight_budget=0.8, page_limit=500, max_concurrency=1) as c:
            await c.request("GET", "/fapi/v1/ping")
            fx.meter.add(70) # another process spends 70 in this window
            await c.request("GET", "/fapi/v1/ping") # the header now says 72
            w0 = fx.meter.window()
            await c.klines("BTCUSDT", "1h", "2024-01-01", "2024-02-01") # 2 pages of 5: must wait for the next window
        assert fx.meter.weight[w0] <= 80 and fx.meter.max_weight() <= 80, fx.meter.weight


def test_python_binance_round_trip(fakex_thread, real_market_data):
    from binance.client import Client
    from binance.exceptions import BinanceAPIException
    fx = fakex_thread
    c = Client(fx.api_key, fx.api_secret, ping=False)
    c.FUTURES_URL, c.FUTURES_DATA_URL, c.API_URL = f"{fx.base_url}/fapi", f"{fx.base_url}/futures/data", f"{fx.base_url}/api"
    kl = c.futures_klines(symbol="BTCUSDT", interval="1h", startTime=1704067200000, limit=3)
    src = real_market_data.bars("klines", "1h").loc["2024-01-01"].iloc[:3]
    assert [r[0] for r in kl] == [1704067200000, 1704070800000, 1704074400000]
    assert [float(r[4]) for r in kl] == list(src["close"])
    c.futures_change_leverage(symbol="BTCUSDT", leverage=10)
    o = c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.01)
    assert o["status"] == "FILLED" and o["clientOrderId"].startswith("x-Cb7ytekJ") and float(o["executedQty"]) == 0.01
    assert c.futures_get_order(symbol="BTCUSDT", orderId=o["orderId"])["status"] == "FILLED"
    pos = c.futures_position_information(symbol="BTCUSDT")
    assert float(pos[0]["positionAmt"]) == 0.01 and float(pos[0]["entryPrice"]) == float(o["avgPrice"]) > 0
    last = float(o["avgPrice"])
    lim = c.futures_create_order(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity=0.01,
                                 price=round(last * 1.5, 1), reduceOnly="true")
    assert lim["status"] == "NEW"
    assert c.futures_cancel_order(symbol="BTCUSDT", origClientOrderId=lim["clientOrderId"])["status"] == "CANCELED"
    stop = c.futures_create_order(symbol="BTCUSDT", side="SELL", type="STOP_MARKET", stopPrice=round(last * 0.9, 1), closePosition="true")
    assert stop["algoStatus"] == "NEW" and stop["triggerPrice"] == str(round(last * 0.9, 1)) # routed to /fapi/v1/algoOrder
    bal = c.futures_account_balance()
    acct = c.futures_account()
    assert bal[0]["asset"] == "USDT" and float(acct["totalWalletBalance"]) < 10_000 # taker fee paid
    assert c.futures_leverage_bracket(symbol="BTCUSDT")[0]["brackets"][0]["initialLeverage"] == 125
    assert len(c.futures_stream_get_listen_key()) == 64
    trades = c.futures_account_trades(symbol="BTCUSDT")
    assert [t["orderId"] for t in trades] == [o["orderId"]] and float(trades[0]["commission"]) > 0
    assert {i["incomeType"] for i in c.futures_income_history(symbol="BTCUSDT")} == {"COMMISSION"}
    assert c.futures_get_position_mode()["dualSidePosition"] is False
    bad = Client(fx.api_key, "wrong-secret", ping=False)
    bad.FUTURES_URL = c.FUTURES_URL
    with pytest.raises(BinanceAPIException) as e: bad.futures_account()
    assert e.value.code == -1022
    with pytest.raises(BinanceAPIException) as e:
        c.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=0.01, newClientOrderId=o["clientOrderId"])
    assert e.value.code == -4116 # a retried order is never placed twice


async def test_weight_budget_binds_without_faults(real_market_data):
    "36 pages of weight 5 (180) against a budget of 80 per window: spread over windows, never above the budget."
    window, limit = 0.5, 100
    async with FakeExchange(real_market_data, port=0, weight_limit=limit, weight_window_s=window) as fx:
        async with client(fx, weight_limit=limit, weight_window_s=window, weight_budget=0.8, page_limit=500, max_concurrency=8) as c:
            got = await c.klines("BTCUSDT", "1h", START, END)
        st = fx.state()
    pd.testing.assert_frame_equal(got, source(real_market_data))
    assert st["max_weight"] <= 80 and len(st["weight_by_window"]) >= 3 and set(st["status_counts"]) == {200}, st


async def test_python_binance_async_client(fakex):
    "python-binance's AsyncClient on the same event loop as the in-process fake."
    from binance import AsyncClient
    c = AsyncClient(fakex.api_key, fakex.api_secret)
    c.FUTURES_URL, c.FUTURES_DATA_URL, c.API_URL = f"{fakex.base_url}/fapi", f"{fakex.base_url}/futures/data", f"{fakex.base_url}/api"
    try:
        kl = await c.futures_klines(symbol="BTCUSDT", interval="1h", limit=5)
        o = await c.futures_create_order(symbol="BTCUSDT", side="SELL", type="MARKET", quantity=0.002)
        pos = await c.futures_position_information(symbol="BTCUSDT")
        fr = await c.futures_funding_rate(symbol="BTCUSDT", limit=3)
    finally:
        await c.close_connection()
    assert len(kl) == 5 and kl[-1][0] == int(real_end_open(fakex)) and o["status"] == "FILLED"
    assert float(pos[0]["positionAmt"]) == -0.002 and len(fr) == 3


def real_end_open(fx):
    bars = fx.data.bars("klines", "1h")
    return bars.index[-1].value // 1_000_000


@pytest.mark.parametrize("kind", ["5xx", "malformed", "truncate"])
async def test_random_faults_on_every_endpoint(fakex, real_market_data, kind):
    "40% of all requests fail (seeded); every call still returns the complete answer."
    async with client(fakex, max_retries=12) as c:
        ref_f = await c.funding_rate("BTCUSDT", "2020-01-01", "2025-01-01")
        ref_oi = await c.open_interest_hist("BTCUSDT", "5m", "2025-05-10", "2025-05-20")
        fakex.faults.add(kind, "/f*", probability=0.4)
        fakex.faults.add("-1021", "/fapi/v1/leverageBracket", count=1)
        f = await c.funding_rate("BTCUSDT", "2020-01-01", "2025-01-01")
        oi = await c.open_interest_hist("BTCUSDT", "5m", "2025-05-10", "2025-05-20")
        br = await c.leverage_brackets("BTCUSDT")
        m = await c.mark_price_klines("BTCUSDT", "1h", START, END)
    assert fakex.faults.rules[0].hits >= 3 and fakex.faults.rules[1].hits == 1
    pd.testing.assert_frame_equal(f, ref_f); pd.testing.assert_frame_equal(oi, ref_oi)
    assert len(br) == 12 and len(f) == 1827 * 3 == len(real_market_data.funding.loc["2020":"2024"]) # 2020-2024, 8-hourly
    pd.testing.assert_frame_equal(m, real_market_data.bars("markPriceKlines", "1h").loc[START:"2024-12-31 23:00"])
