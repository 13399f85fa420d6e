"Walk-forward folds, sweeps and fold sweeps on a 2-process Dask LocalCluster equal the serial run; failures (a killed worker too) are retried; a bad address fails fast."
import functools, os, sys, time
import numpy as np, pandas as pd, pytest
pytest.importorskip("dask.distributed")
import cloudpickle
from btcfut.walkforward import fold_sweep, run_tasks, run_walk_forward, search_space, sweep, walk_forward_folds

cloudpickle.register_pickle_by_value(sys.modules[__name__]) # the workers cannot import this test module

def make_frame(n=600, seed=7):
    rng = np.random.default_rng(seed)
    ix = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="time")
    close = pd.Series(100*np.exp(np.cumsum(rng.normal(0.0002, 0.01, n))), index=ix)
    return pd.DataFrame({"close": close, "ret": close.pct_change().fillna(0.0)})

def toy_signal(p, df): return (df.close > df.close.rolling(p["ma"], min_periods=1).mean()).astype(float)

def score(p, train):
    r = toy_signal(p, train).shift(1).fillna(0)*train.ret
    return r.mean()/r.std() if r.std() > 0 else np.nan

def retrain(fold, train): return sweep({"ma": [5, 10, 20, 40]}, functools.partial(score, train=train))

def score_shared(p, frame): return score(p, frame)

def metrics(p, rows, first):
    r = (toy_signal(p, rows).shift(1).fillna(0)*rows.ret).iloc[first:]
    return {"sharpe": r.mean()/r.std() if r.std() > 0 else np.nan, "return": (1 + r).prod() - 1}

@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster
    lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    yield lc
    lc.close()

def same_wf(a, b):
    pd.testing.assert_series_equal(a.target, b.target, check_exact=True)
    pd.testing.assert_frame_equal(a.trials, b.trials, check_exact=True)
    assert a.models == b.models

def test_walk_forward_and_sweep_on_cluster_equal_serial(cluster):
    frame = make_frame(); folds = walk_forward_folds(frame.index, train="7D", test="2D", purge=2, embargo=3)
    serial = run_walk_forward(frame, folds, retrain, toy_signal, progress=False)
    dask = run_walk_forward(frame, folds, retrain, toy_signal, progress=False, cluster=cluster.scheduler_address)
    same_wf(serial, dask)
    grid = {"ma": [3, 5, 8, 13, 21, 34, 55]}
    s, d = sweep(grid, score_shared, data=frame), sweep(grid, score_shared, data=frame, cluster=cluster.scheduler_address)
    pd.testing.assert_frame_equal(s.scores, d.scores, check_exact=True); assert s.best == d.best
    configs = search_space({"ma": (3, 60)}, "random", n_trials=5, seed=1) # fold sweep: chunks of 2 configurations a task
    fs, fd = fold_sweep(configs, metrics, folds, frame), fold_sweep(configs, metrics, folds, frame, cluster=cluster.scheduler_address, chunk_size=2)
    pd.testing.assert_frame_equal(fs.table, fd.table, check_exact=True); assert fd.n_trials == 5

def test_workers_option_starts_a_local_cluster():
    frame = make_frame(300); folds = walk_forward_folds(frame.index, train="5D", test="2D")
    same_wf(run_walk_forward(frame, folds, retrain, toy_signal, progress=False),
            run_walk_forward(frame, folds, retrain, toy_signal, progress=False, cluster=2))

def flaky(x, marker_dir, how):
    "Fail once per item: raise, or kill the worker process (as if it died mid-run)."
    m = os.path.join(marker_dir, f"{how}-{x}")
    if not os.path.exists(m):
        with open(m, "w") as fh: fh.write(str(os.getpid())) # the process that failed
        if how == "raise": raise RuntimeError(f"transient failure on {x}")
        os._exit(1)
    return x*x

@pytest.mark.parametrize("how", ["raise", "die"])
def test_failed_task_is_retried_and_result_identical(cluster, tmp_path, how):
    got = run_tasks(functools.partial(flaky, how=how), [1, 2, 3], shared=str(tmp_path), cluster=cluster.scheduler_address)
    assert got == [1, 4, 9]
    assert sorted(os.listdir(tmp_path)) == [f"{how}-{x}" for x in (1, 2, 3)] # each one failed once
    if how == "die": # the worker processes really died: none of them serves the cluster any more
        from dask.distributed import Client
        dead = {int((tmp_path/f).read_text()) for f in os.listdir(tmp_path)}
        with Client(cluster.scheduler_address) as c: alive = set(c.run(os.getpid).values())
        assert dead and not dead & alive, (dead, alive)

def test_failing_task_gives_up_after_retries(cluster):
    def bad(x, s): raise ValueError("always")
    with pytest.raises(RuntimeError, match="task 0 failed 2 times"): run_tasks(bad, [0], cluster=cluster.scheduler_address, retries=1)

def test_unreachable_scheduler_is_a_clear_error_within_timeout():
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=r"no Dask scheduler reachable at 'tcp://127.0.0.1:9' within 2 s"):
        run_tasks(lambda x, s: x, [1], cluster="tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 20

def test_cli_sweep_on_cluster_equals_in_process(cluster, tmp_path, monkeypatch):
    "`btcfut sweep --scheduler`: the research rule's evaluator pickles, and the table equals the in-process one."
    from typer.testing import CliRunner
    from btcfut.cli import app
    monkeypatch.setenv("BTCFUT_LOG_DIR", str(tmp_path)); monkeypatch.setenv("BTCFUT_CONFIG", ""); monkeypatch.delenv("BTCFUT_DATA_DIR", raising=False)
    args = ["sweep", "--start", "2023-01-01", "--end", "2023-06-01", "--search", "random", "--trials", "2", "--seed", "1", "--train", "90D", "--test", "30D"]
    r1 = CliRunner().invoke(app, args + ["--json", str(tmp_path/"a.json")])
    r2 = CliRunner().invoke(app, args + ["--scheduler", cluster.scheduler_address, "--json", str(tmp_path/"b.json")])
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    assert (tmp_path/"a.json").read_text() == (tmp_path/"b.json").read_text()
