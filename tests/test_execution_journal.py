"""The execution journal on SQLite and on a real PostgreSQL server started on loopback by the test (and stopped after)."""
import os, shutil, socket, subprocess, tempfile, time
from pathlib import Path
import pytest, sqlalchemy as sa
from btcfut.core import Config, register_secret
from btcfut.execution.journal import Journal, config_hash

PG_BIN = [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)] # Debian keeps them off PATH

def _pg(tool):
    for d in PG_BIN:
        if (d / tool).exists(): return str(d / tool)
    return shutil.which(tool)

def _free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@pytest.fixture(scope="module")
def postgres():
    "A PostgreSQL server on 127.0.0.1 in a temporary directory, password auth; stopped and removed after the module."
    initdb, pg_ctl = _pg("initdb"), _pg("pg_ctl")
    if not (initdb and pg_ctl):
        msg = "PostgreSQL binaries (initdb, pg_ctl) not installed: `make sysdeps` installs the Debian package postgresql"
        if os.environ.get("CI"): pytest.fail(msg) # CI installs it: a missing server there is a broken set-up, not a skip
        pytest.skip(msg)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else [] # initdb refuses to run as root
    d = Path(tempfile.mkdtemp(prefix="btcfut-pg-")); pw = "pg-pass-" + os.urandom(6).hex()
    (d / "pw").write_text(pw)
    if as_user: shutil.chown(d, "postgres"); shutil.chown(d / "pw", "postgres")
    port = _free_port()
    subprocess.run(as_user + [initdb, "-D", str(d / "data"), "-U", "btcfut", f"--pwfile={d / 'pw'}", "-A", "scram-sha-256",
                              "--no-sync"], check=True, capture_output=True)
    subprocess.run(as_user + [pg_ctl, "-D", str(d / "data"), "-o", f"-h 127.0.0.1 -p {port} -k {d}", "-l", str(d / "log"),
                              "-w", "start"], check=True, capture_output=True)
    try: yield {"url": f"postgresql+psycopg2://btcfut@127.0.0.1:{port}/postgres?sslmode=disable", "password": pw}
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(d / "data"), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)

def _exercise(j):
    j.append("decision", {"target": 1.0})
    seq = j.append("order_request", {"side": "BUY", "quantity": "0.01", "signature": "deadbeef"}, client_id="btf1-a-1", symbol="BTCUSDT")
    j.append("order_answer", {"status": "NEW"}, client_id="btf1-a-1")
    assert [r["kind"] for r in j.rows(client_id="btf1-a-1")] == ["order_request", "order_answer"]
    assert "signature" not in j.rows("order_request")[0]["payload"]
    assert j.rows(since=seq)[0]["kind"] == "order_answer"
    assert j.rows()[0]["config_hash"] == config_hash(Config.load())
    for stmt in ("UPDATE journal_events SET kind = 'fill'", "DELETE FROM journal_events"):
        with j.engine.connect() as c, pytest.raises(sa.exc.DBAPIError, match="append-only"): c.execute(sa.text(stmt))
    assert len(j.rows()) == 3

def test_sqlite_journal(tmp_path):
    j = Journal(f"sqlite:///{tmp_path}/j.sqlite"); _exercise(j)
    j.close(); assert len(Journal(f"sqlite:///{tmp_path}/j.sqlite").rows()) == 3 # reopened: rows kept, triggers re-made

def test_postgres_journal(postgres):
    with pytest.raises(sa.exc.OperationalError): # no password in the environment: the server refuses
        Journal(postgres["url"], env={}).rows()
    j = Journal(postgres["url"], env={"BTCFUT_JOURNAL_PASSWORD": postgres["password"]})
    assert j.engine.dialect.name == "postgresql" and postgres["password"] not in repr(j)
    _exercise(j)
    j2 = Journal(postgres["url"], env={"BTCFUT_JOURNAL_PASSWORD": postgres["password"]}) # a second process's view
    assert [r["seq"] for r in j2.rows()] == [r["seq"] for r in j.rows()]
    j.close(); j2.close()

def test_password_in_url_refused():
    with pytest.raises(ValueError, match="must not contain a password"): Journal("postgresql+psycopg2://u:secret@127.0.0.1/db")
