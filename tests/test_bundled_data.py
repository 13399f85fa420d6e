"""The committed bundled store (`data/`) is exactly what the importer makes from the real archive files.

Rebuilds the store from `../shared/data/binance` into a temporary directory with `build_bundled_store` and compares
every Parquet file, `SHA256SUMS` and `MANIFEST.md` byte for byte with the committed ones. Parquet bytes depend on the
writer (pyarrow puts its version in the file footer): when the installed pyarrow differs from the one recorded in
MANIFEST.md, the files are compared as frames instead (values, dtypes, index) and the test says so.
"""
import re
from pathlib import Path
import numpy as np, pandas as pd, pyarrow as pa
import pytest
from btcfut.core import OHLCV_COLUMNS, check_frame
from btcfut.data.store import DataManager, build_bundled_store, bundled_data_dir, load_sample, read_parquet

SHARED = next((p/"shared"/"data"/"binance" for p in Path(__file__).resolve().parents[1].parents
               if (p/"shared"/"data"/"binance").is_dir()), Path("shared-archive-not-found")) # beside the checkout or above
BUNDLED = bundled_data_dir()


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    if not (SHARED/"futures").exists(): pytest.skip(f"real archive data not found at {SHARED} (expected ../shared beside the repo)")
    root = tmp_path_factory.mktemp("bundled")/"data"
    build_bundled_store(SHARED, root)
    return root


def _pyarrow_of_manifest() -> str:
    m = re.search(r"Writer: pyarrow (\S+),", (BUNDLED/"MANIFEST.md").read_text())
    return m.group(1) if m else "?"


def test_committed_store_exists():
    assert (BUNDLED/"MANIFEST.md").exists() and (BUNDLED/"SHA256SUMS").exists(), f"bundled store missing under {BUNDLED}"
    files = sorted(p.relative_to(BUNDLED).as_posix() for p in (BUNDLED/"raw").rglob("*.parquet"))
    listed = [l.split("  ", 1)[1] for l in (BUNDLED/"SHA256SUMS").read_text().splitlines()]
    assert files == listed


def test_reimport_equals_committed(rebuilt):
    new = sorted(p.relative_to(rebuilt).as_posix() for p in (rebuilt/"raw").rglob("*.parquet"))
    old = sorted(p.relative_to(BUNDLED).as_posix() for p in (BUNDLED/"raw").rglob("*.parquet"))
    assert new == old, f"file sets differ: only new {sorted(set(new) - set(old))[:5]}, only committed {sorted(set(old) - set(new))[:5]}"
    if pa.__version__ == _pyarrow_of_manifest():
        for rel in new: assert (rebuilt/rel).read_bytes() == (BUNDLED/rel).read_bytes(), f"{rel} differs from the committed file"
        assert (rebuilt/"SHA256SUMS").read_bytes() == (BUNDLED/"SHA256SUMS").read_bytes()
        assert (rebuilt/"MANIFEST.md").read_text() == (BUNDLED/"MANIFEST.md").read_text()
    else:
        print(f"pyarrow {pa.__version__} != {_pyarrow_of_manifest()} (the bundled store's writer): comparing frames, not bytes")
        for rel in new: pd.testing.assert_frame_equal(read_parquet(rebuilt/rel), read_parquet(BUNDLED/rel), check_exact=True)


def test_reimport_into_existing_store_changes_nothing(rebuilt):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (rebuilt/"raw").rglob("*.parquet")}
    rep = DataManager(rebuilt).import_archive(SHARED)
    assert not rep.written and rep.rows_added == 0 and len(rep.unchanged) == len(before)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (rebuilt/"raw").rglob("*.parquet")} == before


def test_bundled_frames_follow_the_contract():
    dm = DataManager(BUNDLED)
    for ds, sym, iv in dm.stored():
        df = dm.load(ds, sym, iv)
        assert str(df.index.dtype) == "datetime64[ms, UTC]" and df.index.name == "time"
        if ds == "fundingRate":
            check_frame(df, required=["funding_rate", "funding_interval_hours"], name=ds, positive=[])
            assert (df.dtypes == "float64").all() and df.funding_rate.abs().max() < 0.01
        else:
            check_frame(df, name=f"{ds} {iv}")
            assert list(df.columns) == OHLCV_COLUMNS and (df.dtypes == "float64").all()
            assert (df.low <= df[["open", "close"]].min(axis=1)).all() and (df.high >= df[["open", "close"]].max(axis=1)).all()
    k = dm.load("klines", interval="1h")
    assert k.quote_volume.isna().sum() == len(k) - 24 # only the genuine archive day 2024-10-28 has quote volume: NaN, never 0
    assert k.loc["2024-10-28", "trades"].notna().all()


def test_load_sample():
    s = load_sample()
    assert (len(s.bars), len(s.mark), len(s.funding)) == (50_215, 47_677, 6_272) and s.oi is None
    assert s.bars.index[0] == pd.Timestamp("2019-09-08 17:00", tz="UTC") and s.mark.index[0] == pd.Timestamp("2019-12-23 11:00", tz="UTC")
    d = load_sample("1d", start="2024-01-01", end="2025-01-01")
    assert len(d.bars) == 366 and d.bars.high.iloc[0] == s.bars.loc["2024-01-01", "high"].max()
