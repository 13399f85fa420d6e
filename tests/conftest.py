"""Shared pytest fixtures. Add new fixtures below; do not change others' fixtures."""
import pytest


# ---- fake exchange (owner: exchange helper) ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def real_market_data():
    "The bundled real BTCUSDT data (1h klines, 1h mark-price klines, funding) as a `MarketData` for the fake exchange."
    from btcfut.data.store import DataNotFoundError
    from btcfut.fakex import MarketData
    try: return MarketData.from_store(intervals=("1h",))
    except DataNotFoundError as e: pytest.skip(f"bundled store not available: {e}") # a loader bug (ValueError) must fail, not skip


@pytest.fixture
async def fakex(real_market_data):
    "A fake Binance USD-M exchange serving the bundled real data, in-process on a free 127.0.0.1 port (test's event loop)."
    from btcfut.fakex import FakeExchange
    async with FakeExchange(real_market_data, port=0) as fx:
        yield fx


@pytest.fixture
def fakex_thread(real_market_data):
    "The same fake exchange served from a background thread, for synchronous clients (python-binance, requests)."
    from btcfut.fakex import FakeExchange
    fx = FakeExchange(real_market_data, port=0)
    with fx.running_in_thread():
        yield fx
