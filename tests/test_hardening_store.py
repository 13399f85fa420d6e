"""Store hardening: concurrent writers never lose rows (a property test over random interleavings, in threads and in
real `btcfut data import` processes), a waiting writer says why, a killed import is reported and repaired, and
physically impossible bars never enter the store."""
import io, os, random, signal, subprocess, sys, threading, time, zipfile
from pathlib import Path
import numpy as np, pandas as pd
import pytest
import btcfut.data.store as store
from btcfut.core import OHLCV_COLUMNS
from btcfut.data.archive import ArchiveError
from btcfut.data.store import DataManager, StoreLock, StoreLockedError

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "BTCFUT_CONFIG": ""}
HOURS = pd.date_range("2024-01-30", "2024-02-02 23:00", freq="1h", tz="UTC", name="time").as_unit("ms") # spans 2 month files


def bars(times) -> pd.DataFrame:
    "Canonical 1h bars whose values depend only on the open time (the same bar offered twice is identical)."
    t = pd.DatetimeIndex(times).as_unit("ms")
    h = (t.asi8 // 3_600_000) % 97
    o = 40_000.0 + h
    cols = dict(open=o, high=o + 5, low=o - 5, close=o + 1, volume=1.0 + h, quote_volume=(1.0 + h) * o, trades=10.0 + h,
                taker_buy_volume=0.5 + h / 2, taker_buy_quote_volume=(0.5 + h / 2) * o)
    return pd.DataFrame({c: np.asarray(cols[c], dtype="float64") for c in OHLCV_COLUMNS}, index=t.rename("time"))


def subset(rng, p) -> pd.DatetimeIndex: return HOURS[rng.random(len(HOURS)) < p]


@pytest.fixture
def slow_reads(monkeypatch):
    "Widen the read → merge → write window of every writer, so that unlocked writers would lose rows."
    real = store.read_parquet
    def slow(path): time.sleep(random.random() * 0.004); return real(path)
    monkeypatch.setattr(store, "read_parquet", slow)


def test_two_writers_in_threads_end_with_the_union(tmp_path, slow_reads):
    rng, t0 = np.random.default_rng(20), time.monotonic()
    for i in range(30):
        root = tmp_path/f"s{i}"
        pre, a, b = subset(rng, 0.3), subset(rng, rng.uniform(0.1, 0.9)), subset(rng, rng.uniform(0.1, 0.9))
        if i % 3 == 0: b = HOURS.difference(a) # disjoint
        if len(pre): DataManager(root).write("klines", bars(pre), interval="1h")
        go, errors = threading.Barrier(2), []
        def run(times):
            try: go.wait(); DataManager(root).write("klines", bars(times), interval="1h")
            except BaseException as e: errors.append(e)
        th = [threading.Thread(target=run, args=(x,)) for x in (a, b)]
        for t in th: t.start()
        for t in th: t.join(30)
        assert not errors, errors
        got = DataManager(root).load("klines", interval="1h")
        pd.testing.assert_frame_equal(got, bars(pre.union(a).union(b)), check_freq=False)
        assert not list(root.rglob(".*.lock")) and not list(root.rglob("*.tmp"))
    assert time.monotonic() - t0 < 120 # bounded


def write_zips(dst:Path, times) -> Path:
    "Daily archive zips (Binance's kline CSV, with header) holding `times`, under `dst` in the archive's layout."
    df = bars(times)
    for day, g in df.groupby(df.index.strftime("%Y-%m-%d")):
        d = dst/"futures/um/daily/klines/BTCUSDT/1h"; d.mkdir(parents=True, exist_ok=True)
        lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"]
        for t, r in zip(g.index.asi8, g.itertuples(index=False)):
            lines.append(f"{t},{r.open},{r.high},{r.low},{r.close},{r.volume},{t + 3_599_999},{r.quote_volume},{int(r.trades)},"
                         f"{r.taker_buy_volume},{r.taker_buy_quote_volume},0")
        with zipfile.ZipFile(d/f"BTCUSDT-1h-{day}.zip", "w") as z: z.writestr(f"BTCUSDT-1h-{day}.csv", "\n".join(lines) + "\n")
    return dst


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-c", "from btcfut.cli import main; main()", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_two_import_processes_end_with_the_union(tmp_path):
    rng = np.random.default_rng(21)
    for i in range(4):
        root = tmp_path/f"s{i}"
        a, b = subset(rng, 0.6), subset(rng, 0.6)
        if i == 0: b = HOURS.difference(a)
        da, db = write_zips(tmp_path/f"a{i}", a), write_zips(tmp_path/f"b{i}", b)
        ps = [cli("--data-dir", root, "data", "import", d) for d in (da, db)]
        outs = [p.communicate(timeout=120) for p in ps]
        assert [p.returncode for p in ps] == [0, 0], outs
        pd.testing.assert_frame_equal(DataManager(root).load("klines", interval="1h"), bars(a.union(b)), check_freq=False)


def test_a_waiting_writer_says_who_holds_the_lock(tmp_path):
    root = tmp_path/"s"
    target = DataManager(root).series_dir("klines", interval="1h")/"2024-01.parquet"
    want = f"waiting for {target}: locked by pid {os.getpid()} (test holds it"
    with StoreLock([target], "test holds it"):
        p = cli("--data-dir", root, "data", "import", write_zips(tmp_path/"a", HOURS[:24]))
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(iter(p.stderr.readline, "")), daemon=True); reader.start()
        t0 = time.monotonic()
        while not any(want in x for x in lines) and p.poll() is None and time.monotonic() - t0 < 120: time.sleep(0.05)
        assert any(want in x for x in lines) and p.poll() is None, lines # it says so, and keeps waiting
    out = p.stdout.read(); p.wait(60); reader.join(10)
    assert p.returncode == 0, out + "".join(lines)
    assert len(DataManager(root).load("klines", interval="1h")) == 24
    with StoreLock([target], "test holds it"):
        with pytest.raises(StoreLockedError, match=f"2024-01.parquet is still locked by pid {os.getpid()}"):
            DataManager(root, lock_timeout_s=0.2).write("klines", bars(HOURS[:2]), interval="1h")


KILLER = r"""
import sys, time, pyarrow.parquet as pq
from btcfut.data.store import DataManager
real = pq.write_table
def half_then_hang(tbl, where, **kw):
    where.write(b"PAR1 half a file"); where.flush(); print("writing", flush=True); time.sleep(600)
pq.write_table = half_then_hang
DataManager(sys.argv[1]).import_archive(sys.argv[2])
"""


def test_killed_import_is_reported_and_repaired(tmp_path):
    root, src = tmp_path/"s", write_zips(tmp_path/"a", HOURS)
    p = subprocess.Popen([sys.executable, "-c", KILLER, str(root), str(src)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL); p.wait(30)
    dm = DataManager(root)
    info = dm.info()
    assert [(r["pid"], r["what"]) for r in info["interrupted"]] == [(p.pid, f"import {src}")] * 2 # both months' records
    assert len(info["orphan_files"]) == 1 and info["orphan_files"][0].endswith(".tmp")
    rep = dm.import_archive(src)
    assert rep.rows_added == len(HOURS)
    assert dm.interrupted() == [] and dm.orphan_files() == [] and not list(root.rglob(".*.lock"))
    pd.testing.assert_frame_equal(dm.load("klines", interval="1h"), bars(HOURS), check_freq=False)


@pytest.mark.parametrize("col,value", [("high", 39_000.0), ("low", 50_000.0), ("open", 0.0), ("volume", -1.0), ("close", 60_000.0)])
def test_impossible_bars_are_refused_at_import_naming_file_and_row(tmp_path, col, value):
    df = bars(HOURS[:24]); good = write_zips(tmp_path/"good", HOURS[:24])
    dm = DataManager(tmp_path/"s"); dm.import_archive(good)
    before = {p: p.read_bytes() for p in (tmp_path/"s").rglob("*.parquet")}
    zp = next((tmp_path/"good").rglob("*.zip"))
    text = zipfile.ZipFile(zp).read(zp.stem + ".csv").decode().splitlines()
    cells = text[8].split(",") # data row 8 = 07:00
    cells[["open", "high", "low", "close", "volume"].index(col) + 1] = repr(value)
    text[8] = ",".join(cells)
    bad = tmp_path/"bad"/zp.relative_to(tmp_path/"good"); bad.parent.mkdir(parents=True)
    with zipfile.ZipFile(bad, "w") as z: z.writestr(zp.stem + ".csv", "\n".join(text) + "\n")
    with pytest.raises(ArchiveError, match=rf"{bad.name}: .*(impossible bar at 2024-01-30 07:00:00\+00:00 \(row 8\)|'open' must be finite and > 0)"):
        dm.import_archive(tmp_path/"bad")
    assert {p: p.read_bytes() for p in (tmp_path/"s").rglob("*.parquet")} == before
    r = subprocess.run([sys.executable, "-c", "from btcfut.cli import main; main()", "--data-dir", tmp_path/"s", "data", "import", bad],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and bad.name in r.stderr and ("impossible bar" in r.stderr or "must be finite" in r.stderr), r.stderr
    assert {p: p.read_bytes() for p in (tmp_path/"s").rglob("*.parquet")} == before
