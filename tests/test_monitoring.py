"""Monitoring end to end: a real Prometheus server (Debian package) scrapes btcfut's `/metrics` while a synthetic session
drives the `MetricsCollector` with real bundled 1m bars; every btcfut series and every panel query of the shipped Grafana
dashboard return data from it; the alert rules load and fire; promtool checks the config and the rules; the compose
stack parses. These tests never skip: without `prometheus`/`promtool` they fail (`make sysdeps` installs them)."""
import json, math, shutil, socket, subprocess, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
MON = ROOT / "monitoring"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
SCRAPE_S = 1 # the test server's scrape and rule evaluation interval


def _need(tool, name):
    if tool is None: pytest.fail(f"{name} is not installed: `make sysdeps` installs the Debian package prometheus "
                                 f"(monitoring tests fail rather than skip without it)", pytrace=False)
    return tool

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r: return json.loads(r.read())

def query(prom, expr, at:float|None=None) -> list:
    "Result vector of an instant query through Prometheus' HTTP API (at epoch s `at`, default now)."
    d = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr, **({"time": at} if at else {})}))
    assert d["status"] == "success", d
    return d["data"]["result"]

def _wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if cond(): return
        except (OSError, KeyError, AssertionError): pass
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def run_session(mc, health, breakers, bars, funding, pause_s=0.01):
    "Drive every `record_*` on real 1m bars as the live loop would: returns the number of decisions taken."
    from btcfut.risk import liquidation_price
    close = bars.close.to_numpy()
    logret = np.diff(np.log(close), prepend=np.log(close[0]))
    sigma_h = float(np.std(logret[1:]) * math.sqrt(60))
    fast, slow = bars.close.ewm(span=15).mean().to_numpy(), bars.close.ewm(span=60).mean().to_numpy()
    times = (bars.index + pd.Timedelta(minutes=1)).as_unit("s").asi8.astype(float)
    qty = entry = realized = 0.0
    H_SHORT, H_LONG = 5, 60 # label horizons, bars
    decisions = 0
    for i, (t, px) in enumerate(zip(times, close)):
        now = time.time()
        mc.record_bar(t, px, mark_price=px * (1 + 1e-5), volatility_per_hour=sigma_h, now=now); health.data_received(now)
        breakers.check_data(now, now=now); breakers.record_success(now)
        # short model: class probabilities from the last 5-bar return; every 50th call misses its deadline → baseline
        r5 = math.log(px / close[max(i - 5, 0)])
        p_up = 1 / (1 + math.exp(-r5 * 2000)); proba = [0.8 * (1 - p_up), 0.2, 0.8 * p_up]
        source = "baseline" if i % 50 == 49 else "model"
        if source != "model": mc.record_fallback("short", source, "deadline")
        mc.record_prediction("short", 0.002 + 0.001 * (i % 3), source=source, key=i, proba=proba)
        if i >= H_SHORT:
            r = math.log(px / close[i - H_SHORT])
            mc.record_short_label(i - H_SHORT, 2 if r > 2e-4 else 0 if r < -2e-4 else 1)
        # long model: quantiles of the 60-bar log return, resolved 60 bars later; it raises once → flat
        sd = sigma_h
        if i == 30: mc.record_fallback("long", "flat", "raised"); mc.record_prediction("long", 0.02, source="flat")
        else: mc.record_prediction("long", 0.015, key=i, quantiles={0.1: -1.2816 * sd, 0.5: 0.0, 0.9: 1.2816 * sd})
        if i >= H_LONG: mc.record_long_outcome(i - H_LONG, math.log(px / close[i - H_LONG]))
        # decision: EMA 15 vs 60, 0.05 BTC either way
        signal = 1 if fast[i] > slow[i] else -1
        mc.record_decision(signal, now=now); decisions += 1
        target = 0.05 * signal
        if target != qty:
            mc.record_order("MARKET", "NEW"); mc.record_order("MARKET", "FILLED")
            fee = abs(target - qty) * px * 0.0005
            pnl = qty * (px - entry)
            mc.record_fill("BUY" if target > qty else "SELL", fee=fee, realized_pnl=pnl)
            realized += pnl - fee; qty, entry = target, px
        lp = float(liquidation_price(1 if qty > 0 else -1, abs(qty), entry, leverage=10))
        mc.record_position(qty, px, equity=10_000 + realized + qty * (px - entry), entry_price=entry, liq_price=lp,
                           volatility_per_hour=sigma_h)
        if bars.index[i] in funding.index:
            rate = float(funding.funding_rate.loc[bars.index[i]]); mc.record_funding(rate, paid=qty * px * rate)
        if i == 100: mc.record_error("network"); mc.record_reconnect("kline"); mc.record_order("LIMIT", "CANCELED")
        if i == 101: mc.record_error("ConnectionResetError: 10.0.0.7") # not a known kind: published as `other`
        mc.record_breakers(breakers)
        time.sleep(pause_s)
    # the feed stalls: the stale-data breaker opens and /readyz fails
    now = time.time()
    breakers.check_data(now - 600, now=now); mc.record_breakers(breakers)
    return decisions


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    "MonitorServer + a real Prometheus scraping it during a 3-hour session on real 1m bars; yields what the tests need."
    _need(PROMETHEUS, "prometheus")
    from btcfut.data.store import load_sample
    from btcfut.monitoring import Breakers, HealthState, MetricsCollector, MonitorServer
    sample = load_sample("1m", "2025-02-03 00:00", "2025-02-03 03:00")
    mc, breakers = MetricsCollector(), Breakers()
    health = HealthState(max_data_age_s=180, breakers=breakers, reconciled=True)
    tmp = tmp_path_factory.mktemp("prometheus")
    srv = MonitorServer(mc, health, port=0)
    with srv.running_in_thread():
        cfg = {"global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
               "rule_files": [str(MON / "alerts.yml")],
               "scrape_configs": [{"job_name": "btcfut", "static_configs": [{"targets": [f"127.0.0.1:{srv.port}"]}]}]}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        port = _free_port(); prom = f"http://127.0.0.1:{port}"
        log = open(tmp / "prometheus.log", "w")
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: urllib.request.urlopen(f"{prom}/-/ready", timeout=2).status == 200, 60, "prometheus to be ready")
            _wait(lambda: query(prom, 'up{job="btcfut"} == 1'), 30, "the first scrape of btcfut")
            start = time.time()
            decisions = run_session(mc, health, breakers, sample.bars, sample.funding)
            # the last scrape saw the whole session and the stale feed
            _wait(lambda: query(prom, "sum(btcfut_decisions_total)")[0]["value"][1] == str(decisions)
                  and query(prom, 'btcfut_breaker_state{breaker="stale_data"} == 2'), 30, "a scrape after the session")
            # a few more scrapes, so that even a session whose scrapes timed out under load ends with a run of samples
            ends_at = time.time() + 5 * SCRAPE_S
            _wait(lambda: time.time() >= ends_at and query(prom, f'sum_over_time(up{{job="btcfut"}}[{5 * SCRAPE_S}s]) >= 3'),
                  30, "three successful scrapes after the session")
            yield dict(prom=prom, mc=mc, srv=srv, decisions=decisions, sample=sample, start=start, end=time.time())
        finally:
            proc.terminate()
            try: proc.wait(15)
            except subprocess.TimeoutExpired: proc.kill(); proc.wait(5)
            log.close()


def test_every_btcfut_series_is_scraped(session):
    prom, mc = session["prom"], session["mc"]
    missing = [s for s in mc.series() if not query(prom, s)]
    assert not missing, f"series absent from Prometheus: {missing}"
    assert len(mc.series()) >= 30


def test_scraped_values_match_the_session(session):
    prom, mc, bars = session["prom"], session["mc"], session["sample"].bars
    val = lambda e: float(query(prom, e)[0]["value"][1])
    assert val('btcfut_price_usdt{price="last"}') == bars.close.iloc[-1]
    assert val("sum(btcfut_decisions_total)") == session["decisions"] == len(bars)
    assert val("btcfut_short_hit_rate") == pytest.approx(mc.short_quality.hit.value)
    assert val('btcfut_fallbacks_total{model="short", source="baseline", reason="deadline"}') == len(bars) // 50
    assert val('btcfut_errors_total{error="other"}') == 1 and val('btcfut_label_other_total{label="error"}') == 1
    assert val("btcfut_ready") == 0 # the feed went stale at the end
    assert not query(prom, '{__name__=~"btcfut_.*", order_id!=""}') # never an order id as a label


def _panel_targets(dashboard: dict):
    for p in dashboard["panels"]:
        for q in p.get("panels", []) + [p]:
            for t in q.get("targets", []): yield q["title"], t["expr"]


def test_every_dashboard_panel_query_returns_data(session):
    dash = json.loads((MON / "grafana" / "dashboard.json").read_text())
    targets = list(_panel_targets(dash))
    assert len(targets) >= 25
    # Grafana widens $__rate_interval with the dashboard's range; here it spans the whole session (which takes ~10 s
    # alone and minutes on a loaded machine), queried at its end. A query answers "data" when a series has a finite value.
    window = f"{math.ceil(session['end'] - session['start']) + 5 * SCRAPE_S}s"
    def has_data(expr):
        return any(math.isfinite(float(r["value"][1])) for r in query(session["prom"], expr.replace("$__rate_interval", window), at=session["end"]))
    empty = [(title, expr) for title, expr in targets if not has_data(expr)]
    assert not empty, f"dashboard panels without data: {empty}"


def test_dashboard_covers_every_series(session):
    text = (MON / "grafana" / "dashboard.json").read_text()
    families = {s.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for s in session["mc"].series()}
    assert not [f for f in sorted(families) if f not in text], "series the dashboard does not plot"


def test_alert_rules_load_and_the_breaker_alert_fires(session):
    prom = session["prom"]
    groups = _get(f"{prom}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert {"BtcfutBreakerOpen", "BtcfutDataStale", "BtcfutDrawdown", "BtcfutNoDecision"} <= set(rules)
    assert all(r["health"] == "ok" for r in rules.values()), {n: r.get("lastError") for n, r in rules.items()}
    def firing():
        alerts = _get(f"{prom}/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "BtcfutBreakerOpen" and a["labels"]["breaker"] == "stale_data" and a["state"] == "firing"]
    _wait(firing, 20, "BtcfutBreakerOpen to fire for stale_data")


def test_readyz_fails_and_no_route_touches_an_order(session):
    url = session["srv"].url
    with pytest.raises(urllib.error.HTTPError) as e: urllib.request.urlopen(url + "/readyz", timeout=5)
    assert e.value.code == 503 and "stale_data" in json.loads(e.value.read())["checks"]["breakers_closed"]["detail"]
    assert _get(url + "/healthz")["status"] == "alive"
    for path in ("/metrics", "/healthz", "/readyz", "/fapi/v1/order", "/order"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(urllib.request.Request(url + path, data=b"side=BUY&quantity=1", method=method), timeout=5)
            assert e.value.code in (404, 405), (method, path, e.value.code)


def _promtool(*args):
    r = subprocess.run([_need(PROMTOOL, "promtool"), *args], cwd=MON, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout

def test_promtool_check_rules():
    assert "SUCCESS: 7 rules found" in _promtool("check", "rules", "alerts.yml")

def test_promtool_alert_unit_tests():
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")

def test_promtool_check_config():
    assert "is valid prometheus config file" in _promtool("check", "config", "prometheus.yml")


def test_compose_stack_parses():
    "docker is not available here: the compose file is checked by parsing, and every file it mounts exists."
    compose = yaml.safe_load((MON / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"btcfut", "prometheus", "grafana"}
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."): assert (MON / src).exists(), f"{name} mounts missing {src}"
        assert all(p.startswith("127.0.0.1:") for p in svc.get("ports", [])), f"{name} publishes beyond loopback"
    b = compose["services"]["btcfut"]
    assert (MON / b["build"]["context"] / b["build"]["dockerfile"]).is_file()
    prom = yaml.safe_load((MON / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == [f"btcfut:{b['environment']['BTCFUT_MONITORING_PORT']}"]
    ds = yaml.safe_load((MON / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    dash = json.loads((MON / "grafana" / "dashboard.json").read_text())
    assert {p["datasource"]["uid"] for p in dash["panels"] if p["type"] != "row"} == {ds["uid"]}
    assert yaml.safe_load((MON / "grafana/provisioning/dashboards/btcfut.yml").read_text())["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
