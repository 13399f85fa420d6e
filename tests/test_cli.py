"""The `btcfut` command end to end, as a user runs it: real processes, the fake exchange over loopback."""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import pandas as pd
import pytest
from btcfut.data.archive import shared_archive_dir

ROOT = Path(__file__).resolve().parents[1]
BTCFUT = str(Path(sys.executable).parent / "btcfut")
SHARED = shared_archive_dir() or Path("shared-archive-not-found")  # shared/data/binance beside the checkout or above it
LOGS = tempfile.mkdtemp(prefix="btcfut-test-logs-")  # the commands' log and audit files, out of the repository
ENV = {**{k: v for k, v in os.environ.items() if k != "BTCFUT_DATA_DIR"}, "BTCFUT_CONFIG": "", "BTCFUT_LOG_DIR": LOGS}

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([BTCFUT, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=ENV)

@pytest.fixture(scope="module")
def fake_exchange():
    if not SHARED.is_dir(): pytest.skip("shared archive data (shared/data/binance) not found beside the checkout or in a folder above it")
    port = _free_port()
    p = subprocess.Popen([BTCFUT, "fakex", "--port", str(port), "--archive-root", str(SHARED)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=ENV)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/fapi/v1/ping", timeout=1); break
        except OSError:
            if p.poll() is not None: pytest.fail(f"btcfut fakex exited: {p.stdout.read()}")
            time.sleep(0.2)
    yield url
    p.terminate(); p.wait(10)

def test_fetch_into_a_new_store_equals_the_bundled_data(fake_exchange, tmp_path):
    r = run("--data-dir", str(tmp_path), "data", "fetch", "--interval", "1h", "--start", "2024-01-01",
            "--end", "2024-03-01", "--base-url", fake_exchange)
    assert r.returncode == 0, r.stderr
    from btcfut.data.store import DataManager
    got = DataManager(tmp_path).load("klines", "BTCUSDT", "1h")
    want = DataManager().load("klines", "BTCUSDT", "1h", "2024-01-01", "2024-03-01")
    assert len(got) == 60 * 24
    pd.testing.assert_frame_equal(got[["open", "high", "low", "close", "volume"]], want[["open", "high", "low", "close", "volume"]])
    info = json.loads(run("--data-dir", str(tmp_path), "data", "info", "--json").stdout)
    assert [(s["dataset"], s["interval"], s["rows"]) for s in info["series"]] == [("klines", "1h", 1440)]

def test_download_and_import_archive_files(fake_exchange, tmp_path):
    r = run("--data-dir", str(tmp_path / "store"), "data", "download", "--dataset", "fundingRate", "--start", "2024-01-01",
            "--end", "2024-03-01", "--base-url", fake_exchange, "--dest", str(tmp_path / "mirror"))
    assert r.returncode == 0, r.stderr
    assert "downloaded 2 files" in r.stdout
    from btcfut.data.store import DataManager
    got = DataManager(tmp_path / "store").load("fundingRate", "BTCUSDT")
    want = DataManager().load("fundingRate", "BTCUSDT", start="2024-01-01", end="2024-03-01")
    pd.testing.assert_frame_equal(got, want)
    again = run("--data-dir", str(tmp_path / "store"), "data", "download", "--dataset", "fundingRate", "--start", "2024-01-01",
                "--end", "2024-03-01", "--base-url", fake_exchange, "--dest", str(tmp_path / "mirror"))
    assert "downloaded 0 files" in again.stdout and "2 already complete" in again.stdout

def test_bad_input_gets_a_clear_error(tmp_path):
    r = run("--data-dir", str(tmp_path), "data", "fetch", "--interval", "7m", "--start", "2024-01-01", "--end", "2024-02-01",
            "--base-url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "unknown interval '7m'" in r.stderr, r.stderr
    r = run("--data-dir", str(tmp_path), "data", "fetch", "--start", "2024-02-01", "--end", "2024-01-01",
            "--base-url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "before" in r.stderr.lower(), r.stderr
    assert not any(tmp_path.rglob("*.parquet")), "a failed fetch wrote files"

def test_fetch_takes_epoch_milliseconds(fake_exchange, tmp_path):
    r = run("--data-dir", str(tmp_path), "data", "fetch", "--interval", "1h", "--start", "1704067200000",
            "--end", "2024-01-03", "--base-url", fake_exchange)               # 1704067200000 = 2024-01-01 00:00 UTC
    assert r.returncode == 0, r.stderr
    assert "fetched 48 rows" in r.stdout

def test_the_shared_archive_is_found_in_any_folder_above_the_checkout(tmp_path, monkeypatch):
    import btcfut.core
    (tmp_path / "shared" / "data" / "binance").mkdir(parents=True)
    monkeypatch.setattr(btcfut.core, "project_root", lambda: tmp_path / "work" / "wt" / "glue")   # a worktree two levels down
    assert shared_archive_dir() == tmp_path / "shared" / "data" / "binance"
    monkeypatch.setattr(btcfut.core, "project_root", lambda: tmp_path / "elsewhere" / "repo")
    (tmp_path / "shared" / "data" / "binance").rmdir()
    assert shared_archive_dir() is None
