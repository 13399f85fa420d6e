"""The archive downloader against the fake exchange's static archive route (loopback only).

Covers: a fresh mirror equals the source bytes and imports into the store; a second run skips verified files;
a cut download (a `.part` file) is resumed with an HTTP Range request; a resumed file that fails its checksum is
deleted and raises; a server that ignores Range restarts the file; files the server does not have are reported missing.
"""
import http.server, threading
from pathlib import Path
import pytest
from btcfut.data.archive import ArchiveError, download_archive, read_archive, sha256_file
from btcfut.data.store import DataManager

SHARED = next((p/"shared"/"data"/"binance" for p in Path(__file__).resolve().parents[1].parents
               if (p/"shared"/"data"/"binance").is_dir()), Path("shared-archive-not-found")) # beside the checkout or above
pytestmark = pytest.mark.skipif(not (SHARED/"futures").exists(), reason=f"real archive data not found at {SHARED}")

FUND = "futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-{:02d}.zip"
K1H = "futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip"


@pytest.fixture(scope="module")
def fakex():
    from btcfut.fakex import FakeExchange
    fx = FakeExchange(archive_root=SHARED, port=0)
    with fx.running_in_thread():
        yield fx


def test_fresh_download_equals_source_and_imports(fakex, tmp_path):
    rep = download_archive("fundingRate", "BTCUSDT", "2024-01-01", "2024-04-01", dest=tmp_path, base_url=fakex.base_url, progress=True)
    assert [p.relative_to(tmp_path).as_posix() for p in rep.downloaded] == [FUND.format(m) for m in (1, 2, 3)]
    assert not rep.missing and not rep.skipped and rep.bytes == sum((SHARED/FUND.format(m)).stat().st_size for m in (1, 2, 3))
    for m in (1, 2, 3):
        assert (tmp_path/FUND.format(m)).read_bytes() == (SHARED/FUND.format(m)).read_bytes()
        assert (tmp_path/(FUND.format(m) + ".CHECKSUM")).exists()
    rep = download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert len(rep.downloaded) == 1
    dm = DataManager(tmp_path/"store")
    w = dm.import_archive(tmp_path/"futures", require_checksum=True)
    assert w.sources == 4 and w.rows_added == w.rows_in
    assert dm.load("klines", interval="1h").equals(read_archive(SHARED/K1H))
    assert len(dm.load("fundingRate")) == sum(len(read_archive(SHARED/FUND.format(m))) for m in (1, 2, 3))


def test_second_run_skips_verified_files(fakex, tmp_path):
    download_archive("fundingRate", "BTCUSDT", "2024-01-01", "2024-03-01", dest=tmp_path, base_url=fakex.base_url, progress=False)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.zip")}
    rep = download_archive("fundingRate", "BTCUSDT", "2024-01-01", "2024-03-01", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert len(rep.skipped) == 2 and not rep.downloaded and rep.bytes == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.zip")} == mtimes


def test_cut_download_resumes_with_range(fakex, tmp_path):
    src = (SHARED/K1H).read_bytes()
    dest = tmp_path/K1H; dest.parent.mkdir(parents=True)
    half = len(src) // 2
    dest.with_name(dest.name + ".part").write_bytes(src[:half]) # what a cut connection leaves behind
    rep = download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert rep.resumed == [dest] and rep.bytes == len(src) - half
    assert dest.read_bytes() == src and sha256_file(dest) == sha256_file(SHARED/K1H)
    assert not dest.with_name(dest.name + ".part").exists()


def test_bad_resumed_bytes_fail_checksum_and_are_removed(fakex, tmp_path):
    src = (SHARED/K1H).read_bytes()
    dest = tmp_path/K1H; dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(b"\0" * (len(src) // 2)) # a corrupt partial file
    with pytest.raises(ArchiveError, match="checksum mismatch"):
        download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    rep = download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert rep.downloaded == [dest] and dest.read_bytes() == src


def test_stale_complete_file_is_refetched(fakex, tmp_path):
    dest = tmp_path/FUND.format(1); dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the right zip")
    rep = download_archive("fundingRate", "BTCUSDT", "2024-01-01", "2024-02-01", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert rep.downloaded == [dest] and dest.read_bytes() == (SHARED/FUND.format(1)).read_bytes()


def test_missing_files_are_reported(fakex, tmp_path):
    rep = download_archive("fundingRate", "BTCUSDT", "2025-05-01", "2025-07-01", dest=tmp_path, base_url=fakex.base_url, progress=False)
    assert len(rep.downloaded) == 1 and len(rep.missing) == 1 and rep.missing[0].endswith("BTCUSDT-fundingRate-2025-06.zip")


def test_server_without_range_support_restarts(tmp_path):
    "http.server's static handler ignores Range (answers 200): the partial file must be replaced, not appended to."
    served = tmp_path/"www"; (served/"data").mkdir(parents=True)
    (served/"data"/"futures").symlink_to(SHARED/"futures")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k): super().__init__(*a, directory=str(served), **k)
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        src = (SHARED/K1H).read_bytes()
        dest = tmp_path/"mirror"/K1H; dest.parent.mkdir(parents=True)
        dest.with_name(dest.name + ".part").write_bytes(src[:1000])
        rep = download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path/"mirror",
                               base_url=f"http://127.0.0.1:{srv.server_address[1]}", progress=False)
        assert rep.downloaded == [dest] and not rep.resumed and dest.read_bytes() == src
    finally:
        srv.shutdown(); srv.server_close()


def test_bad_requests_raise_before_any_download(tmp_path):
    with pytest.raises(ArchiveError, match="is not after start"):
        download_archive("klines", "BTCUSDT", "2024-02-01", "2024-01-01", interval="1h", dest=tmp_path, progress=False)
    with pytest.raises(ArchiveError, match="unknown interval '7m'"):
        download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="7m", dest=tmp_path, progress=False)
    with pytest.raises(ArchiveError, match="unknown symbol"):
        download_archive("klines", "btc", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, progress=False)
    assert not any(tmp_path.iterdir())
