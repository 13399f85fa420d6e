"""`data download` hardening: a transfer cut mid-body is resumed (not renamed into place and then reported as a
checksum mismatch); a server with none of the files is an error and leaves no folders behind."""
import http.server, os, re, subprocess, sys, threading
from pathlib import Path
import pytest
from btcfut.data.archive import ArchiveError, download_archive, sha256_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p/"shared"/"data"/"binance" for p in Path(__file__).resolve().parents[1].parents
               if (p/"shared"/"data"/"binance").is_dir()), Path("shared-archive-not-found")) # beside the checkout or above
pytestmark = pytest.mark.skipif(not (SHARED/"futures").exists(), reason=f"real archive data not found at {SHARED}")
K1H = "futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip"


def serve(cut_first:int):
    "A static archive server with Range support whose first `cut_first` full-body answers stop halfway (the socket closes)."
    state = dict(cuts=0, ranges=[])
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            p = SHARED/self.path.removeprefix("/data/")
            if not self.path.startswith("/data/") or not p.is_file(): self.send_error(404); return
            data, rng = p.read_bytes(), self.headers.get("Range")
            lo = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
            state["ranges"].append(lo)
            self.send_response(206 if rng else 200)
            if rng: self.send_header("Content-Range", f"bytes {lo}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - lo)); self.end_headers()
            if not rng and p.suffix == ".zip" and state["cuts"] < cut_first:
                state["cuts"] += 1
                self.wfile.write(data[:len(data) // 2]); self.wfile.flush(); self.close_connection = True; return
            self.wfile.write(data[lo:])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}", state


def test_cut_transfer_is_resumed_not_renamed(tmp_path):
    srv, url, state = serve(cut_first=1)
    try:
        rep = download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, base_url=url,
                               progress=False, backoff_s=0.01)
    finally: srv.shutdown(); srv.server_close()
    dest = tmp_path/K1H
    size = (SHARED/K1H).stat().st_size
    assert state["cuts"] == 1 and state["ranges"][-1] == size // 2 # the second request continued where the cut left off
    assert rep.downloaded == [dest] and rep.resumed == [dest] and sha256_file(dest) == sha256_file(SHARED/K1H)
    assert not dest.with_name(dest.name + ".part").exists()


def test_transfer_cut_every_time_fails_and_keeps_the_part(tmp_path):
    srv, url, _ = serve(cut_first=10**6) # every full-body answer is cut; a Range answer is whole: one resume suffices
    try:
        with pytest.raises(ArchiveError, match="transfer cut after"):
            download_archive("klines", "BTCUSDT", "2024-01-01", "2024-02-01", interval="1h", dest=tmp_path, base_url=url,
                             progress=False, retries=0, backoff_s=0.01)
    finally: srv.shutdown(); srv.server_close()
    dest = tmp_path/K1H
    assert not dest.exists() and dest.with_name(dest.name + ".part").stat().st_size == (SHARED/K1H).stat().st_size // 2


def test_server_with_none_of_the_files_is_an_error_and_leaves_no_folders(tmp_path, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs") # the command's log and audit files go elsewhere: tmp_path must stay empty
    srv, url, _ = serve(cut_first=0)
    try:
        with pytest.raises(ArchiveError, match="none of the 2 file"):
            download_archive("fundingRate", "BTCUSDT", "2031-01-01", "2031-03-01", dest=tmp_path/"mirror", base_url=url, progress=False)
        assert not (tmp_path/"mirror").exists()
        r = subprocess.run([sys.executable, "-c", "from btcfut.cli import main; main()", "data", "download", "--dataset", "fundingRate", "--start", "2031-01-01",
                            "--end", "2031-03-01", "--dest", str(tmp_path/"cli"), "--base-url", url],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "BTCFUT_CONFIG": "", "BTCFUT_LOG_DIR": str(logs)})
    finally: srv.shutdown(); srv.server_close()
    assert r.returncode != 0, r.stdout + r.stderr
    assert "none of the 2 file" in r.stdout + r.stderr
    assert not any(tmp_path.iterdir()), sorted(tmp_path.rglob("*")) # no mirror, no empty folders
