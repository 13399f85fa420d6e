"""Crash tests: the trading process is killed with SIGKILL between journaling and sending, and between sending and the
answer; a restart reconciles and re-runs the same decision → no duplicate order, no lost order, journal == exchange."""
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest
from btcfut.core import Config
from btcfut.execution import BinanceExecutor, EventKind, Journal, client_order_id, reconcile
from btcfut.fakex import FakeExchange, MarketData

ROOT = Path(__file__).resolve().parents[1]
DECISION = ("crash-test", 1_738_400_000_000, "entry") # strategy, bar time, intent: the same on every run

CHILD = r"""
import os, signal, sys, json
from btcfut.core import Config
from btcfut.execution import BinanceExecutor, Journal, OrderRequest, client_order_id, reconcile
base_url, journal_url, mode = sys.argv[1:4]
class Executor(BinanceExecutor):
    def _before_send(self, r):
        if mode == "crash_before_send": os.kill(os.getpid(), signal.SIGKILL)
cfg = Config.load(overrides={"exchange.recv_window_ms": 3000, "execution.lookup_backoff_s": 0.1})
ex = Executor("testnet", Journal(journal_url, cfg=cfg), cfg, base_url)
rec = reconcile(ex, "BTCUSDT") if mode == "restart" else None
rep = ex.place(OrderRequest("BTCUSDT", "BUY", "MARKET", 0.01, client_id=client_order_id("crash-test", 1_738_400_000_000, "entry")))
after = reconcile(ex, "BTCUSDT")
print(json.dumps({"state": str(rep.state), "resolved": rec.resolved if rec else None, "ok": after.ok, "unexplained": after.unexplained}))
"""

def child(fx, journal_url, mode, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BINANCE_API_KEY": fx.api_key, "BINANCE_API_SECRET": fx.api_secret}
    return subprocess.Popen([sys.executable, "-c", CHILD, fx.base_url, journal_url, mode], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    import json; return json.loads(out.strip().splitlines()[-1])

def agree(fx, journal_url):
    "Exactly one order of the decision on the exchange, filled; the journal's last word on it is FILLED."
    cid = client_order_id(*DECISION)
    mine = [o for o in fx.orders.values() if o.client_id == cid]
    assert len(mine) == 1 and mine[0].status == "FILLED" and len(fx.orders) == 1
    rows = Journal(journal_url).rows(client_id=cid)
    last = [r for r in rows if r["kind"] in ("order_answer", "order_lookup")][-1]["payload"]
    assert last["status"] == "FILLED" and fx.account.qty == 0.01
    return rows

@pytest.fixture
def fake():
    fx = FakeExchange(MarketData.synthetic(periods=300), port=0)
    with fx.running_in_thread(): yield fx

def test_kill_between_journal_and_send(fake, tmp_path):
    url = f"sqlite:///{tmp_path}/journal.sqlite"
    p = child(fake, url, "crash_before_send"); p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert [r["kind"] for r in Journal(url).rows(client_id=client_order_id(*DECISION))] == ["order_request"] and fake.orders == {}
    out = finish(child(fake, url, "restart"))
    assert out["resolved"] == {client_order_id(*DECISION): "NOT_FOUND"} and out["state"] == "FILLED" and out["ok"], out
    agree(fake, url)

def test_kill_between_send_and_answer(fake, tmp_path):
    url = f"sqlite:///{tmp_path}/journal.sqlite"
    fake.faults.add("slow", "/fapi/v1/order", method="POST", count=1, delay_s=1.5) # the answer takes 1.5 s
    p = child(fake, url, "first")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fake.faults.rules[0].hits == 0: time.sleep(0.02) # the request reached the exchange
    os.kill(p.pid, signal.SIGKILL); p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    time.sleep(2.0) # the exchange finishes the order the dead process sent
    assert [o.status for o in fake.orders.values()] == ["FILLED"]
    out = finish(child(fake, url, "restart"))
    assert out["resolved"] == {client_order_id(*DECISION): "FILLED"} and out["state"] == "FILLED" and out["ok"], out
    rows = agree(fake, url)
    assert [r["kind"] for r in rows].count("order_request") == 1 # found by lookup: never sent again
