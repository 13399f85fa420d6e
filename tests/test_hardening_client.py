"""Client hardening against the fake exchange: a 429 storm that sends Retry-After is sat out (the whole limiter pauses)
instead of burning the retry budget; an answer holding a physically impossible bar is refused and nothing is stored."""
import re
import numpy as np, pandas as pd
import pytest
from btcfut.data.client import BinanceDataClient, BinanceRequestError, fetch_to_store
from btcfut.data.store import DataManager
from btcfut.fakex import FakeExchange, MarketData

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5.0)


async def test_429_storm_with_retry_after_completes_without_spending_retries():
    md = MarketData.synthetic(start="2024-01-01", periods=24 * 200, interval="1h")
    async with FakeExchange(md, port=0, retry_grace_s=0.5) as fx:
        fx.faults.add("429", "/fapi/v1/klines", count=8, probability=1.0, retry_after_s=1) # more 429s than retries
        async with BinanceDataClient(base_url=fx.base_url, **FAST, max_retries=1, max_concurrency=4, page_limit=500) as c:
            got = await c.klines("BTCUSDT", "1h", "2024-01-01", "2024-07-01")
            assert c.limiter.waited_s >= 1.0 # the whole limiter paused for Retry-After
        st = fx.state()
    src = md.bars("klines", "1h")
    pd.testing.assert_frame_equal(got, src[(src.index >= "2024-01-01") & (src.index < "2024-07-01")])
    assert fx.faults.rules[0].hits == 8 and 418 not in st["status_counts"], st["status_counts"] # never banned


async def test_429_without_retry_after_still_counts_as_a_retry():
    md = MarketData.synthetic(start="2024-01-01", periods=24 * 10, interval="1h")
    async with FakeExchange(md, port=0) as fx:
        fx.faults.add("error", "/fapi/v1/klines", count=10, status=429, code=-1003, msg="Too many requests.")
        async with BinanceDataClient(base_url=fx.base_url, **FAST, max_retries=2) as c:
            with pytest.raises(BinanceRequestError, match="failed 3 times; last: HTTP 429"):
                await c.klines("BTCUSDT", "1h", "2024-01-01", "2024-01-05")


def test_impossible_bar_is_refused_at_fetch_and_nothing_stored(tmp_path):
    md = MarketData.synthetic(start="2024-01-01", periods=24 * 5, interval="1h")
    k = md.bars("klines", "1h").copy()
    t = k.index[30]
    k.loc[t, "high"] = k.loc[t, "low"] - 1 # high below low
    bad = MarketData(klines={"1h": k}, funding=md.funding)
    with FakeExchange(bad, port=0).running_in_thread() as fx:
        with pytest.raises(BinanceRequestError, match=rf"GET /fapi/v1/klines: BTCUSDT last-price klines 1h: impossible bar at {re.escape(str(t))} \(row 31\)"):
            fetch_to_store("BTCUSDT", "1h", "2024-01-01", "2024-01-05", root=tmp_path/"s", base_url=fx.base_url, progress=False)
    assert not (tmp_path/"s").exists() or not list((tmp_path/"s").rglob("*.parquet"))
