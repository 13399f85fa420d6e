"""What a careful user broke with the `btcfut` command, each case run as a real process (cwd and environment as a user's)."""
import json, os, shutil, socket, subprocess, sys, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BTCFUT = str(Path(sys.executable).parent / "btcfut")
BUNDLED = ROOT / "data"
ARCHIVE_HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"

def run(*args, cwd, env=None, timeout=120) -> subprocess.CompletedProcess:
    "`btcfut ARGS` in `cwd`, with no user config, no store override and the logs under `cwd/logs` unless `env` says otherwise."
    base = {k: v for k, v in os.environ.items() if k not in ("BTCFUT_CONFIG", "BTCFUT_DATA_DIR", "BTCFUT_LOG_DIR")}
    base["BTCFUT_LOG_DIR"] = str(Path(cwd) / "logs")
    return subprocess.run([BTCFUT, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**base, **(env or {})})

def one_line_error(r: subprocess.CompletedProcess, *contains: str):
    "Exit code 2 and exactly one stderr line, `error: ...`, holding every string of `contains`."
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for s in contains: assert s in lines[0], (s, lines[0])

def write_config(path: Path, text: str) -> Path:
    path.write_text(text); return path

def archive(dest: Path, day: str = "2024-05-08", edit=None) -> Path:
    "A one-zip archive tree (Binance archive layout) of the bundled 5m klines of `day`, the CSV passed through `edit`."
    from btcfut.data.store import DataManager
    import pandas as pd
    bars = DataManager(BUNDLED).load("klines", "BTCUSDT", "5m", day, pd.Timestamp(day) + pd.Timedelta(days=1))
    ms = bars.index.as_unit("ms").asi8
    cell = lambda v: "" if v != v else repr(float(v))            # the archive leaves unknown fields empty
    rows = [",".join([str(t), *(cell(getattr(b, c)) for c in ("open", "high", "low", "close", "volume")), str(t + 299_999),
                      *(cell(getattr(b, c)) for c in ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")), "0"])
            for t, b in zip(ms, bars.itertuples())]
    text = "\n".join([ARCHIVE_HEADER, *rows]) + "\n"
    if edit: text = edit(text)
    d = dest / "futures" / "um" / "daily" / "klines" / "BTCUSDT" / "5m"; d.mkdir(parents=True)
    with zipfile.ZipFile(d / f"BTCUSDT-5m-{day}.zip", "w", zipfile.ZIP_DEFLATED) as z: z.writestr(f"BTCUSDT-5m-{day}.csv", text)
    return dest

def _edit_first_close(text: str) -> str:
    "Set the first bar's close to its open (still a consistent bar, but a different value)."
    lines = text.splitlines()
    f = lines[1].split(","); f[4] = f[1]; lines[1] = ",".join(f)
    return "\n".join(lines) + "\n"

def _files(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}

# --- 1. every command honours one resolved configuration ------------------------------------------------------------
def test_import_honours_config_root_and_on_conflict(tmp_path):
    good, changed = archive(tmp_path / "good"), archive(tmp_path / "changed", edit=_edit_first_close)
    store = tmp_path / "store"
    cfg = write_config(tmp_path / "user.yaml", f"data:\n  root: {store}\n  on_conflict: raise\n")
    before = _files(BUNDLED)
    r = run("--config", cfg, "data", "import", good, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["root"] == str(store) and len(_files(store)) == 1
    stored = _files(store)
    r = run("--config", cfg, "data", "import", changed, cwd=tmp_path)
    one_line_error(r, "differ from the stored ones", "on_conflict='raise'")
    assert _files(store) == stored, "on_conflict: raise still changed the store"
    assert _files(BUNDLED) == before, "rows landed in the bundled store"
    r = run("--config", cfg, "data", "info", "--json", cwd=tmp_path)            # info reads the same store
    assert r.returncode == 0 and json.loads(r.stdout)["series"][0]["rows"] == 288, r.stderr

def test_relative_data_dir_is_taken_from_the_current_directory(tmp_path):
    good = archive(tmp_path / "good")
    r = run("--data-dir", "rel/store", "data", "import", good, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(_files(tmp_path / "rel" / "store")) == 1
    r = run("--data-dir", "rel/store", "config", cwd=tmp_path)
    assert json.loads(r.stdout)["data"]["root"] == str(tmp_path / "rel" / "store")

def test_every_command_sees_the_config_root(tmp_path):
    cfg = write_config(tmp_path / "user.yaml", f"data:\n  root: {tmp_path / 'nowhere'}\n")
    assert json.loads(run("--config", cfg, "config", cwd=tmp_path).stdout)["data"]["root"] == str(tmp_path / "nowhere")
    for cmd in (["data", "info"], ["demo"]):
        one_line_error(run("--config", cfg, *cmd, cwd=tmp_path), f"no store at {tmp_path / 'nowhere'}")
    r = run("--config", cfg, "fakex", "--port", _free_port(), cwd=tmp_path)
    one_line_error(r, "no klines of BTCUSDT in the store at", str(tmp_path / "nowhere"))

# --- 3. sides -------------------------------------------------------------------------------------------------------
def test_risk_liq_reads_every_side_form(tmp_path):
    def liq(side): 
        r = run("risk", "liq", "--side", side, "--qty", 1, "--entry", 60000, "--leverage", 10, "--sigma", 0.007, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)
    long, short = liq("long"), liq("short")
    assert 0 < long["touch_probability"] < 0.05 and long["liquidation_price"] < 60000 < short["liquidation_price"]
    for side in ("buy", "1"): assert liq(side) == long, side      # any case: tested in core
    for side in ("SELL", "-1"): assert liq(side) == short, side
    one_line_error(run("risk", "liq", "--side", "flat", "--qty", 1, "--entry", 60000, "--leverage", 10, cwd=tmp_path),
                   "--side: unknown side 'flat'", "long/buy")

# --- 5. secrets from the environment --------------------------------------------------------------------------------
PRINT_KEYS = "from btcfut.core import Config; c = Config.load().exchange; print(repr(c.api_key)); print(repr(c.api_secret))"

@pytest.mark.parametrize("key,secret", [("12345678", "98765432"), ("true", "1e5"), ("null", "abc #def"), ("0x1F", "- x")])
def test_env_secrets_stay_verbatim_strings(tmp_path, key, secret):
    env = {"BINANCE_API_KEY": key, "BINANCE_API_SECRET": secret}
    r = run("config", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["exchange"]["api_secret"] == "***"
    p = subprocess.run([sys.executable, "-c", PRINT_KEYS], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, **env, "BTCFUT_CONFIG": ""})
    assert p.stdout.splitlines() == [repr(key), repr(secret)], p.stderr

def test_no_error_message_contains_a_secret(tmp_path):
    secret = "hunter2hunter2"
    for text, said in (("exchange:\n  timeout_s: ${BINANCE_API_SECRET}\n", "'exchange.timeout_s': expected float"),
                       ("exchange:\n  api_secret: 12345678\n", "'exchange.api_secret': expected str"),
                       ("exchange:\n  api_secret: hunter2hunter2: [\n", "bad YAML in")):
        cfg = write_config(tmp_path / "user.yaml", text)
        r = run("--config", cfg, "config", cwd=tmp_path, env={"BINANCE_API_SECRET": secret})
        one_line_error(r, said)
        assert secret not in r.stderr + r.stdout and "12345678" not in r.stderr, r.stderr

# --- schema ranges and choices --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,key", [
    ("exchange:\n  page_limit: 0\n", "exchange.page_limit"), ("exchange:\n  timeout_s: -1\n", "exchange.timeout_s"),
    ("exchange:\n  max_retries: -1\n", "exchange.max_retries"), ("fees:\n  taker: -0.0005\n", "fees.taker"),
    ("fees:\n  maker: -0.0001\n", "fees.maker"), ("data:\n  on_conflict: overwrite\n", "data.on_conflict"),
    ("data:\n  lock_timeout_s: -1\n", "data.lock_timeout_s"), ("data:\n  lock_timeout_s: soon\n", "data.lock_timeout_s"),
    ("exchange:\n  max_rate_limit_waits: -1\n", "exchange.max_rate_limit_waits")])
def test_out_of_range_settings_fail_at_load_naming_the_key(tmp_path, text, key):
    cfg = write_config(tmp_path / "user.yaml", text)
    cmd = ["data", "info"] if key == "data.on_conflict" else ["config"]   # every command loads it the same way
    one_line_error(run("--config", cfg, *cmd, cwd=tmp_path), f"config key '{key}'")

def test_lock_timeout_and_rate_limit_waits_are_settings(tmp_path):
    default = json.loads(run("config", cwd=tmp_path).stdout)
    assert (default["data"]["lock_timeout_s"], default["exchange"]["max_rate_limit_waits"]) == (600.0, 50)
    cfg = write_config(tmp_path / "user.yaml", "data:\n  lock_timeout_s: .inf\nexchange:\n  max_rate_limit_waits: 3\n")
    mine = json.loads(run("--config", cfg, "config", cwd=tmp_path).stdout)
    assert (mine["data"]["lock_timeout_s"], mine["exchange"]["max_rate_limit_waits"]) == (float("inf"), 3)
    from btcfut.core import Config
    from btcfut.data.client import BinanceDataClient
    from btcfut.data.store import DataManager
    assert BinanceDataClient(Config.load(cfg)).c["max_rate_limit_waits"] == 3
    assert DataManager(tmp_path, Config.load(cfg)).lock_timeout_s == float("inf")

# --- 2. a store file locked past data.lock_timeout_s; 4. --manifest honours the configuration -------------------
def _month_file(store: Path) -> Path:
    return store / "raw" / "binance" / "um" / "klines" / "BTCUSDT" / "5m" / "2024-05.parquet"

def test_a_store_locked_past_the_lock_timeout_is_a_one_line_error(tmp_path):
    from btcfut.data.store import StoreLock
    good, store = archive(tmp_path / "good"), tmp_path / "store"
    assert run("--data-dir", store, "data", "import", good, cwd=tmp_path).returncode == 0
    cfg = write_config(tmp_path / "user.yaml", f"data:\n  root: {store}\n  lock_timeout_s: 0.5\n")
    before = _files(store)
    with StoreLock([_month_file(store)], "another import"):
        r = run("--config", cfg, "data", "import", good, cwd=tmp_path, timeout=60)   # with the default 600 s this would wait
    errors = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert r.returncode == 2 and len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    assert f"{_month_file(store)} is still locked by pid {os.getpid()} (another import, since" in errors[0]
    assert "after 0.5 s; nothing written" in errors[0] and "Traceback" not in r.stderr
    assert _files(store) == before

def test_import_manifest_honours_config_on_conflict(tmp_path):
    good, changed = archive(tmp_path / "good"), archive(tmp_path / "changed", edit=_edit_first_close)
    store = tmp_path / "store"
    cfg = write_config(tmp_path / "user.yaml", f"data:\n  root: {store}\n  on_conflict: raise\n")
    bundled = _files(BUNDLED)
    r = run("--config", cfg, "data", "import", "--manifest", good, cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["root"] == str(store), r.stderr
    assert (store / "MANIFEST.md").exists() and (store / "SHA256SUMS").exists()
    stored, manifest = _files(store), (store / "MANIFEST.md").read_bytes()
    r = run("--config", cfg, "data", "import", "--manifest", changed, cwd=tmp_path)
    one_line_error(r, "differ from the stored ones", "on_conflict='raise'")
    assert _files(store) == stored and (store / "MANIFEST.md").read_bytes() == manifest, "--manifest ignored on_conflict: raise"
    assert _files(BUNDLED) == bundled

# --- data info says what needs attention ----------------------------------------------------------------------------
HOLD_AND_WAIT = """import sys, time; from pathlib import Path; from btcfut.data.store import StoreLock
p = Path(sys.argv[1])
with StoreLock([p], "import killed.zip") as lk:
    (p.parent / f".{p.name}.dead.tmp").write_bytes(b"half a file"); lk.written += 1
    print("ready", flush=True); time.sleep(120)
"""

def test_data_info_shows_interrupted_imports_orphans_and_impossible_bars(tmp_path):
    from btcfut.data.store import read_parquet, write_parquet
    good, store = archive(tmp_path / "good"), tmp_path / "store"
    assert run("--data-dir", store, "data", "import", good, cwd=tmp_path).returncode == 0
    p = _month_file(store)
    df = read_parquet(p); df.iloc[3, df.columns.get_loc("high")] = df["low"].iloc[3] - 1; write_parquet(p, df)  # another tool's bad bar
    w = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, str(p)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try: assert w.stdout.readline().strip() == "ready"
    finally: w.kill(); w.wait(10)                                                      # kill -9 in the middle of the write
    rel = p.relative_to(store).as_posix()
    r = run("--data-dir", store, "data", "info", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())                                                   # the notes may wrap
    assert f"klines BTCUSDT 5m: 1 impossible bar(s)" in out and str(df.index[3]) in out, r.stdout
    assert f"interrupted: the last write of {rel} never finished (pid {w.pid}, import killed.zip" in out, r.stdout
    assert f"1 temporary file(s) left by interrupted writes" in out and f".{p.name}.dead.tmp" in out, r.stdout
    info = json.loads(run("--data-dir", store, "data", "info", "--json", cwd=tmp_path).stdout)
    assert [(i["file"], i["pid"], i["what"]) for i in info["interrupted"]] == [(rel, w.pid, "import killed.zip")]
    assert info["orphan_files"] == [f"{Path(rel).parent.as_posix()}/.{p.name}.dead.tmp"]
    assert (info["series"][0]["impossible_bars"], info["series"][0]["impossible_list"]) == (1, [str(df.index[3])])
    assert run("--data-dir", store, "data", "import", good, cwd=tmp_path).returncode == 0   # the re-run repairs all three
    r = run("--data-dir", store, "data", "info", cwd=tmp_path)
    assert r.returncode == 0 and "impossible bar(s)" not in r.stdout and "interrupted" not in r.stdout and "temporary" not in r.stdout

# --- one-line errors instead of tracebacks --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _partial_store(dest: Path) -> Path:
    "A store holding only the bundled 1h klines (no funding, no mark prices)."
    d = dest / "raw" / "binance" / "um" / "klines" / "BTCUSDT"
    shutil.copytree(BUNDLED / "raw" / "binance" / "um" / "klines" / "BTCUSDT" / "1h", d / "1h")
    return dest

def test_one_line_errors(tmp_path):
    (tmp_path / "a_file").write_text("x")
    one_line_error(run("--config", tmp_path, "config", cwd=tmp_path), f"config file {tmp_path} is a directory")
    one_line_error(run("--log-level", "NOPE", "config", cwd=tmp_path), "--log-level", "'NOPE'", "DEBUG, INFO")
    one_line_error(run("--data-dir", "a_file", "data", "info", cwd=tmp_path), f"--data-dir {tmp_path / 'a_file'} is not a directory")
    one_line_error(run("--data-dir", "missing", "demo", cwd=tmp_path), f"no store at {tmp_path / 'missing'}")
    part = _partial_store(tmp_path / "part")
    one_line_error(run("--data-dir", part, "demo", cwd=tmp_path), "lacks data the demo needs", "fundingRate")
    one_line_error(run("fakex", "--port", 70000, cwd=tmp_path), "--port 70000 is out of range; expected 0..65535")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); s.listen(); port = s.getsockname()[1]
        one_line_error(run("fakex", "--port", port, cwd=tmp_path, timeout=60), f"cannot listen on 127.0.0.1:{port}", "in use")
    f = sorted((part / "raw").rglob("*.parquet"))[3]
    f.write_bytes(f.read_bytes()[:1000])
    r = run("--data-dir", part, "data", "info", cwd=tmp_path)
    one_line_error(r, "cannot read the store", f.name)
    r = run("--log-level", "DEBUG", "--data-dir", part, "data", "info", cwd=tmp_path)   # DEBUG adds the traceback
    assert r.returncode == 2 and "Traceback (most recent call last)" in r.stderr and "error: cannot read the store" in r.stderr

# --- the audit trail ------------------------------------------------------------------------------------------------
def test_commands_write_the_log_and_audit_files_the_config_names(tmp_path):
    cfg = write_config(tmp_path / "user.yaml", f"logging:\n  dir: {tmp_path / 'mylogs'}\n  audit_file: trail.jsonl\n")
    ok = run("--config", cfg, "risk", "liq", "--side", "buy", "--qty", 1, "--entry", 60000, "--leverage", 10, cwd=tmp_path)
    bad = run("--config", cfg, "risk", "liq", "--side", "up", "--qty", 1, "--entry", 60000, "--leverage", 10, cwd=tmp_path)
    assert ok.returncode == 0 and bad.returncode == 2
    trail = [json.loads(l) for l in (tmp_path / "mylogs" / "trail.jsonl").read_text().splitlines()]
    assert [t["event"] for t in trail] == ["command started", "command finished"] * 2
    assert trail[1]["argv"][-8:-6] == ["--side", "buy"] and trail[1]["exit_code"] == 0 and trail[1]["error"] is None
    assert trail[3]["exit_code"] == 2 and "unknown side 'up'" in trail[3]["error"]
    assert (tmp_path / "mylogs" / "btcfut.jsonl").exists() and not (tmp_path / "logs").exists()

# --- dates ----------------------------------------------------------------------------------------------------------
def test_date_errors_name_the_option(tmp_path):
    fetch = ("--data-dir", tmp_path / "s", "data", "fetch", "--base-url", "http://127.0.0.1:9")
    one_line_error(run(*fetch, "--start", "2024-13-01", "--end", "2024-02-01", cwd=tmp_path), "--start '2024-13-01' is not a time")
    one_line_error(run(*fetch, "--start", "2024-01-01", "--end", "soon", cwd=tmp_path), "--end 'soon' is not a time")
    one_line_error(run(*fetch, "--start", "1704067200", "--end", "2024-02-01", cwd=tmp_path), "--start 1704067200: epoch seconds?")
    one_line_error(run(*fetch, "--start", "1706745600000", "--end", "2024-01-01", cwd=tmp_path),
                   "--start 2024-02-01 00:00:00+00:00 is not before --end 2024-01-01 00:00:00+00:00")
    one_line_error(run("fakex", "--replay-start", "yesterday-ish", cwd=tmp_path), "--replay-start 'yesterday-ish' is not a time")
