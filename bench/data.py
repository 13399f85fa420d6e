"""Benchmark the data store: import rate for one year of 1m klines, cold and warm load of one year of 1m bars.

The year is built from REAL data: the bundled 1m klines (82,586 real minutes, 2023-07/08 and 2025-05, read from the
archive zips in ../shared/data/binance) are tiled over 2021-01-01 .. 2021-12-31 23:59 (525,600 minutes): minute i of the
year gets the OHLCV of real minute i mod 82,586, with its time shifted onto the year's grid. They are written as 12
monthly archive zips (header line, empty fields where the source has none, .CHECKSUM beside each) in a temp directory,
then imported through `DataManager.import_archive` (parse + checksum + validation + Parquet write).

Peers measured in the same run: pandas.read_csv of the same zips (parse only), pandas.read_parquet of the same store
files (load only). Prints a JSON object as its last line.
Run: .venv/bin/python bench/data.py
"""
import hashlib, json, os, statistics, subprocess, sys, tempfile, time, zipfile
from pathlib import Path
import numpy as np, pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from btcfut.data.archive import find_archive_files, read_archive, shared_archive_dir
from btcfut.data.store import DataManager

KLINE_HEADER = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                "taker_buy_volume", "taker_buy_quote_volume", "ignore"]


def real_minutes() -> pd.DataFrame:
    src = shared_archive_dir()
    if src is None: sys.exit("bench/data.py needs the real archive data in ../shared/data/binance")
    files = [f for f in find_archive_files(src, ["klines"]) if f.interval == "1m"]
    return pd.concat([read_archive(f.path) for f in files])


def build_year(real: pd.DataFrame, out: Path, year: int = 2021) -> int:
    idx = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="1min", tz="UTC", inclusive="left").as_unit("ms")
    take = np.arange(len(idx)) % len(real)
    vals = real.iloc[take]
    t = idx.asi8
    frame = pd.DataFrame({"open_time": t, "open": vals.open.to_numpy(), "high": vals.high.to_numpy(), "low": vals.low.to_numpy(),
                          "close": vals.close.to_numpy(), "volume": vals.volume.to_numpy(), "close_time": t + 59_999,
                          "quote_volume": vals.quote_volume.to_numpy(), "count": vals.trades.to_numpy(),
                          "taker_buy_volume": vals.taker_buy_volume.to_numpy(), "taker_buy_quote_volume": vals.taker_buy_quote_volume.to_numpy(),
                          "ignore": np.nan})
    d = out/"futures/um/monthly/klines/BTCUSDT/1m"; d.mkdir(parents=True)
    month = idx.strftime("%Y-%m")
    for m in sorted(set(month)):
        name = f"BTCUSDT-1m-{m}"
        csv = frame[month == m].to_csv(index=False, header=KLINE_HEADER, na_rep="", float_format=None).replace(".0,", ",")
        z = d/f"{name}.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf: zf.writestr(f"{name}.csv", csv)
        (d/f"{name}.zip.CHECKSUM").write_text(f"{hashlib.sha256(z.read_bytes()).hexdigest()}  {z.name}\n")
    return len(idx)


COLD = """
import sys, time
from btcfut.data.store import DataManager
dm = DataManager(sys.argv[1])
t = time.perf_counter(); df = dm.load("klines", "BTCUSDT", "1m"); dt = time.perf_counter() - t
assert len(df) == int(sys.argv[2]), len(df)
print(dt)
"""


def main():
    tmp = Path(tempfile.mkdtemp(prefix="btcfut-bench-data-"))
    real = real_minutes()
    rows = build_year(real, tmp/"src")
    zips = sorted((tmp/"src").rglob("*.zip"))

    t = time.perf_counter(); peer = [pd.read_csv(z) for z in zips]; read_csv_s = time.perf_counter() - t
    assert sum(map(len, peer)) == rows

    dm = DataManager(tmp/"store")
    t = time.perf_counter(); rep = dm.import_archive(tmp/"src"); import_s = time.perf_counter() - t
    assert rep.rows_added == rows and len(rep.written) == 12
    t = time.perf_counter(); rep2 = dm.import_archive(tmp/"src"); reimport_s = time.perf_counter() - t
    assert not rep2.written

    cold_proc = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", COLD, str(tmp/"store"), str(rows)], capture_output=True, text=True, check=True)
        cold_proc.append(float(out.stdout.strip().splitlines()[-1]))
    cold_cleared = []
    for _ in range(5):
        dm.clear_cache()
        t = time.perf_counter(); df = dm.load("klines", "BTCUSDT", "1m"); cold_cleared.append(time.perf_counter() - t)
    assert len(df) == rows
    warm = []
    for _ in range(50):
        t = time.perf_counter(); df = dm.load("klines", "BTCUSDT", "1m"); warm.append(time.perf_counter() - t)
    warm_range = []
    for _ in range(50):
        t = time.perf_counter(); dm.load("klines", "BTCUSDT", "1m", "2021-03-01", "2021-04-01"); warm_range.append(time.perf_counter() - t)
    files = sorted((tmp/"store").rglob("*.parquet"))
    peer_parquet = []
    for _ in range(3):
        t = time.perf_counter(); pdf = pd.concat([pd.read_parquet(p) for p in files]); peer_parquet.append(time.perf_counter() - t)
    assert len(pdf) == rows
    store_mib = sum(p.stat().st_size for p in files) / 2**20
    res = {
        "bench": "data", "rows": rows, "files": len(zips), "cpus": os.cpu_count(),
        "data": f"real 1m klines ({len(real):,} minutes from ../shared/data/binance) tiled over 2021 with shifted times; 12 monthly zips with header + .CHECKSUM",
        "import_s": round(import_s, 3), "import_rows_per_s": round(rows / import_s),
        "reimport_noop_s": round(reimport_s, 3),
        "peer_pandas_read_csv_s": round(read_csv_s, 3), "import_vs_read_csv": round(read_csv_s / import_s, 2),
        "cold_load_s_new_process_median": round(statistics.median(cold_proc), 4),
        "cold_load_s_cache_cleared_median": round(statistics.median(cold_cleared), 4),
        "warm_load_ms_median": round(statistics.median(warm) * 1000, 3),
        "warm_load_one_month_ms_median": round(statistics.median(warm_range) * 1000, 3),
        "peer_pandas_read_parquet_s": round(statistics.median(peer_parquet), 4),
        "cold_vs_read_parquet": round(statistics.median(peer_parquet) / statistics.median(cold_cleared), 2),
        "store_mib": round(store_mib, 2),
        "targets": {"warm_ms_lt": 100, "cold_s_lt": 1.0},
        "ok": statistics.median(warm) < 0.1 and max(cold_proc) < 1.0,
    }
    import shutil; shutil.rmtree(tmp)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
