"""Cases that let deliberate bugs through before; each test fails on the bug named in its docstring.

* two archive files disagree on a bar: the daily file wins over the monthly one (within one import);
* a fine-bar replay of an hour that hits both the stop and the liquidation price: the deepest minute decides;
* a limit order the open gaps through, with slippage on: filled at the open but never worse than the limit;
* the report's drawdown chart: its lowest point is the `max_drawdown` of the metrics table.
"""
import zipfile
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from btcfut.core import Config, OHLCV_COLUMNS
from btcfut.data.archive import read_archive
from btcfut.data.store import DataManager, DataNotFoundError, load_sample

HDR = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"


def kline_zip(path:Path, times, close_shift:float=0.0):
    "A kline archive zip holding 1h bars at `times` (values from the time; `close_shift` moves every close)."
    lines = [HDR]
    for t in pd.DatetimeIndex(times).as_unit("ms").asi8:
        o = 40_000.0 + (t // 3_600_000) % 50
        lines.append(f"{t},{o},{o + 100},{o - 100},{o + close_shift},12.5,{t + 3_599_999},500000.0,100,6.0,240000.0,0")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z: z.writestr(path.stem + ".csv", "\n".join(lines) + "\n")
    return path


def test_daily_archive_row_wins_over_monthly(tmp_path):
    """Bug caught: files applied in path order ('daily/' sorts before 'monthly/'), so the monthly row overwrote the
    newer daily one. A daily file is Binance's later publication of the same bars; it must win."""
    src = tmp_path/"archive/futures/um"
    month = pd.date_range("2024-01-01", "2024-01-31 23:00", freq="1h", tz="UTC")
    day = pd.date_range("2024-01-15", periods=24, freq="1h", tz="UTC", name="time")
    kline_zip(src/"monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip", month)
    d = kline_zip(src/"daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01-15.zip", day, close_shift=7.0) # disagrees on 24 closes
    dm = DataManager(tmp_path/"store")
    rep = dm.import_archive(tmp_path/"archive")
    k = dm.load("klines", interval="1h")
    assert len(k) == len(month) and rep.rows_in == len(month)
    pd.testing.assert_frame_equal(k.loc[day], read_archive(d), check_freq=False)
    assert (k.drop(day)["close"] == k.drop(day)["open"]).all()


def engine(**kw):
    from btcfut.backtest import BacktestEngine
    base = dict(initial_equity=10_000.0, leverage=50.0, slippage_bps=0.0, slippage_impact=0.0, min_notional=0.0, taker=0.0005, maker=0.0002)
    return BacktestEngine(Config.load(), **{**base, **kw})


def hour_bars(rows):
    idx = pd.date_range("2024-03-01", periods=len(rows), freq="1h", tz="UTC", name="time").as_unit("ms")
    return pd.DataFrame([dict(open=o, high=h, low=l, close=c, volume=1e6) for o, h, l, c in rows], index=idx)


def minutes(hour:pd.Timestamp, lows:dict) -> pd.DataFrame:
    "60 quiet 1m bars of `hour` (low 99,600) with the given {minute: low}."
    idx = pd.date_range(hour, periods=60, freq="1min", tz="UTC", name="time").as_unit("ms")
    low = np.full(60, 99_600.0)
    for k, v in lows.items(): low[k] = v
    return pd.DataFrame({"open": 99_700.0, "high": 99_800.0, "low": low, "close": 99_700.0, "volume": 100.0}, index=idx)


@pytest.mark.parametrize("deep", [0, 37, 59])
def test_fine_replay_deepest_minute_liquidates(deep):
    """Long 1 BTC at 100,000 with 50x (liquidation ~98,442), stop 1% below (99,000). Hour 2's last-price low 98,700
    touches the stop, its mark low 98,000 the liquidation price. On 1m bars the only minute touching the stop is also
    the deepest one, where the mark wick sits: the position is liquidated there, not stopped (at minute 0, 37 or 59:
    bugs caught: a replay that skips the first or last minute of the hour, that looks for a *last-price* minute at the
    liquidation price, or that lets the stop win the tie). When an earlier minute touches the stop first, the stop wins."""
    bars = hour_bars([(100_000, 100_100, 99_900, 100_000), (100_000, 100_100, 99_900, 100_000),
                      (99_700, 99_800, 98_700, 99_700), (99_700, 99_800, 99_600, 99_700)])
    mark = bars.copy(); mark.iloc[2, mark.columns.get_loc("low")] = 98_000.0
    tgt = pd.Series([1.0, np.nan, np.nan, np.nan], bars.index)
    eng = engine()
    fine = minutes(bars.index[2], {deep: 98_700.0})
    r = eng.run(bars, tgt, mark=mark, fine_bars=fine, stop_loss=0.01, target_unit="qty")
    lp = r.liq_price.iloc[1]
    assert 98_000 < lp < 98_700 and r.trades.exit_reason.tolist() == ["liquidation"], r.trades
    assert r.trades.exit_price.iloc[0] == pytest.approx(lp, rel=1e-12) and r.position.iloc[2] == 0.0
    if deep > 0: # an earlier minute touches the stop (not as deep): the stop fills first, at its level
        fine = minutes(bars.index[2], {deep - 1: 98_950.0, deep: 98_700.0})
        r = eng.run(bars, tgt, mark=mark, fine_bars=fine, stop_loss=0.01, target_unit="qty")
        assert r.trades.exit_reason.tolist() == ["stop_loss"] and r.trades.exit_price.iloc[0] == pytest.approx(99_000.0, rel=1e-12)


@pytest.mark.parametrize("side", [1, -1])
def test_limit_gapped_through_at_the_open_fills_at_the_limit(side):
    """A buy limit at 100 (sell: 100) rests from bar 0; bar 1 opens through it at 99.9 (sell: 100.1). It fills at the
    open as a taker, and with slippage on (50 bps here, more than the 0.1% gap) the price is capped at the limit:
    exactly 100 (bug caught: slippage applied past the limit). With 5 bps the fill is at open x (1 ± 5 bps), inside it."""
    gap = 99.9 if side > 0 else 100.1
    bars = hour_bars([(100.0, 100.5, 99.5, 100.0), (gap, gap + 0.5, gap - 0.5, gap), (gap, gap + 0.5, gap - 0.5, gap)])
    orders = pd.DataFrame({"time": bars.index[:1], "kind": ["limit"], "qty": [1.0*side], "price": [100.0]})
    r = engine(slippage_bps=50.0, slippage_max_bps=50.0, leverage=5.0).run(bars, orders=orders, target_unit="qty")
    assert r.position.tolist() == [0.0, side, side], r.position.tolist()
    assert r.trades.entry_price.iloc[0] == pytest.approx(100.0, rel=1e-12), r.trades
    r = engine(slippage_bps=5.0, slippage_max_bps=50.0, leverage=5.0).run(bars, orders=orders, target_unit="qty")
    assert r.trades.entry_price.iloc[0] == pytest.approx(gap*(1 + side*5e-4), rel=1e-12)


def test_report_drawdown_trace_bottoms_at_max_drawdown():
    """The report thins long series for its charts (at most `max_points` per trace). Its drawdown trace must keep the
    worst point: its minimum equals `max_drawdown` of the same returns, the figure in the metrics table (bug caught:
    the trace thinned with 'last' per bucket, so the chart's low sat above the reported maximum drawdown)."""
    from btcfut.backtest import BacktestEngine
    from btcfut.metrics import MetricsCalculator, _figures, max_drawdown
    try: s = load_sample("1h", start="2021-01-01", end="2023-01-01")
    except DataNotFoundError as e: pytest.skip(f"bundled store not available: {e}")
    res = BacktestEngine(Config.load(), leverage=3.0).run(s.bars, pd.Series(2.0, s.bars.index), mark=s.mark, funding=s.funding)
    assert len(res.returns) > 5000 # so the chart is thinned
    fig = _figures(res, None, None, 5000)[1]
    assert fig.layout.title.text == "Drawdown" and len(fig.data[0].y) < len(res.returns)
    mdd = max_drawdown(res.returns)
    assert float(np.min(fig.data[0].y)) == pytest.approx(mdd, rel=1e-12) and mdd < -0.3
    assert MetricsCalculator(interval="1h").compute(res)["max_drawdown"] == pytest.approx(mdd, rel=1e-12)
