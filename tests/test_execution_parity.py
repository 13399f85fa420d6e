"""Parity: a day of real 1m bars replayed through the fake exchange at full speed, the same targets for the backtest,
the paper backend (bars and funding read from the fake over REST) and the testnet backend (python-binance → fake)."""
import numpy as np, pandas as pd, pytest
from binance.client import Client
from btcfut.backtest import BacktestEngine
from btcfut.core import Config, time_to_ms
from btcfut.execution import BinanceExecutor, Journal, OrderRequest, PaperExecutor, client_order_id
from btcfut.fakex import FakeExchange, MarketData

DAY = "2025-02-01"

@pytest.fixture(scope="module")
def day():
    from btcfut.data.store import DataManager, DataNotFoundError
    try:
        dm = DataManager()
        return dm.load("klines", "BTCUSDT", "1m").loc[DAY], dm.load("fundingRate", "BTCUSDT").loc[DAY]
    except (DataNotFoundError, KeyError) as e: pytest.skip(f"bundled 1m bars of {DAY} not available: {e}")

def test_paper_and_testnet_match_the_backtest(day):
    bars, funding = day
    target = (np.sign(bars["close"].pct_change(30)).fillna(0.0) * 0.05).round(3) # BTC
    bt = BacktestEngine(Config.load()).run(bars, target, funding=funding, target_unit="qty")
    fx = FakeExchange(MarketData(klines={"1m": bars}, funding=funding), port=0, path_interval="1m", weight_limit=10**9,
                      order_limit_1m=10**6, order_limit_10s=10**6)
    env = {"BINANCE_API_KEY": fx.api_key, "BINANCE_API_SECRET": fx.api_secret}
    fx.set_time(bars.index[0])
    with fx.running_in_thread():
        feed = Client(ping=False); feed.FUTURES_URL = fx.base_url + "/fapi" # the paper backend's market data: REST from the fake
        paper = PaperExecutor(bars.index[0], "1m", len(bars), journal=Journal("sqlite://"))
        ex = BinanceExecutor("testnet", Journal("sqlite://"), Config.load(), fx.base_url, env)
        n = len(bars)
        for k, t in enumerate(bars.index):
            t_ms = int(time_to_ms(t))
            fx.call(fx.advance(t_ms + 60_000)) # the bar closes on the exchange
            (o, h, l, c, v) = [float(x) for x in feed.futures_klines(symbol="BTCUSDT", interval="1m", startTime=t_ms, limit=1)[0][1:6]]
            rate = sum(float(e["fundingRate"]) for e in feed.futures_funding_rate(symbol="BTCUSDT", startTime=t_ms, endTime=t_ms + 59_999))
            paper.on_bar(t, o, h, l, c, v, funding_rate=rate)
            if k + 1 == n: break
            tgt = float(target.iloc[k])
            paper.set_target(tgt)
            held = ex.position("BTCUSDT")[0]
            if round(tgt - held, 3) != 0:
                side, qty = ("BUY" if tgt > held else "SELL"), round(abs(tgt - held), 3)
                ex.place(OrderRequest("BTCUSDT", side, "MARKET", qty, client_id=client_order_id("parity", t, "rebalance")))
        testnet_position = ex.position("BTCUSDT")[0]
    res = paper.result()
    for k in ("final_equity", "fees_paid", "funding_paid", "slippage_paid", "turnover", "n_trades"):
        assert abs(res.totals[k] - bt.totals[k]) <= 1e-9, (k, res.totals[k], bt.totals[k])
    pd.testing.assert_frame_equal(res.trades, bt.trades, rtol=0, atol=1e-9)
    assert (res.position.to_numpy() == bt.position.to_numpy()).all()
    assert bt.totals["n_trades"] > 10 and bt.totals["funding_paid"] != 0.0
    assert testnet_position == res.position.iloc[-1] == float(target.iloc[-2])
