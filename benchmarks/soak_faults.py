"""Soak the worker-death scenarios on Dask and ipyparallel, optionally under CPU stress.

Each round is one fresh cluster and one search (4 candidates x cv=3 on 450
digits, tests/_doubles.py's CountingClassifier) in a process of its own, with
a hard time limit: a round over it is killed, cluster included, and counted
as hung. Scenarios: (1) a fit kills its worker once; (2) a fit always kills
its worker; (3) a worker is SIGKILLed from outside mid-search. Outside the
test run. Usage::

    python benchmarks/soak_faults.py [--rounds 20] [--engines dask,ipyparallel]
                                     [--stress] [--timeout 120] [--quick]

merges its counts into benchmarks/results/soak.json (only the entries it
ran) and rewrites docs/soak.md from it.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS = os.path.join(ROOT, "tests")
OUT = os.path.join(HERE, "results", "soak.json")
PAGE = os.path.join(ROOT, "docs", "soak.md")
GRID = {"c": [0, 1, 2, 3]}
WORKERS = {"dask": 2, "ipyparallel": 3}
SCENARIOS = {"1": "a fit kills its worker once", "2": "a fit always kills its worker",
             "3": "a worker killed from outside mid-search"}
SEPARATE = set()  # (engine, scenario) of known open problems: reported apart

sys.path.insert(0, TESTS)  # the test doubles (the workers get them through PYTHONPATH)
from _doubles import CountingClassifier, count_fits  # noqa: E402
from _oracle import assert_same_search  # noqa: E402


# ---------------------------------------------------------------- one round (child process)

def data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:450], y[:450]


def search(estimator, backend):
    from parml import ParallelGridSearchCV

    X, y = data()
    return ParallelGridSearchCV(estimator, GRID, cv=3, backend=backend).fit(X, y), X


def kills_once(backend, engine, workdir, reference, pids):
    marker = os.path.join(workdir, "crashed")
    ours, X = search(CountingClassifier(crash_on=1, crash_once_marker=marker,
                                        delay=0.05 if engine == "ipyparallel" else 0.0), backend)
    assert os.path.exists(marker), "the fit never killed its worker"
    assert_same_search(ours, reference, X)


def always_kills(backend, engine, workdir, reference, pids):
    import numpy as np
    from sklearn.exceptions import FitFailedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours, _ = search(CountingClassifier(crash_on=2), backend)
    assert any(issubclass(w.category, FitFailedWarning) for w in caught), "no FitFailedWarning"
    scores = ours.cv_results_["mean_test_score"]
    assert np.isnan(scores[2]), f"candidate 2 scored {scores[2]}, not NaN"
    np.testing.assert_array_equal(scores[[0, 1, 3]],
                                  reference.cv_results_["mean_test_score"][[0, 1, 3]])


def killed_from_outside(backend, engine, workdir, reference, pids):
    """SIGKILL a worker once a fit came back (a worker started its second one), or 1 s
    after the first fit started, whichever comes first."""
    log = os.path.join(workdir, "fits")
    os.mkdir(log)
    victim, done, killed = pids()[0], threading.Event(), threading.Event()

    def killer():
        while count_fits(log) == 0 and not done.wait(0.01):
            pass
        start = time.monotonic()
        while count_fits(log) <= WORKERS[engine] and time.monotonic() - start < 1.0:
            time.sleep(0.01)
        if not done.is_set():
            os.kill(victim, signal.SIGKILL)
            killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    ours, X = search(CountingClassifier(delay=0.15, log_dir=log), backend)
    done.set()
    thread.join()
    if not killed.is_set():
        raise RuntimeError("the search ended before the worker was killed")
    assert_same_search(ours, reference, X)


RUN = {"1": kills_once, "2": always_kills, "3": killed_from_outside}


def on_dask(scenario, workdir, reference):
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        RUN[scenario](client, "dask", workdir, reference,
                      lambda: sorted(client.run(os.getpid).values()))


def on_ipyparallel(scenario, workdir, reference):
    import ipyparallel

    cluster = ipyparallel.Cluster(n=3, log_level=40, controller_ip="127.0.0.1",
                                  profile_dir=os.path.join(workdir, "ipython"))
    client = None
    try:
        client = cluster.start_and_connect_sync()
        RUN[scenario](client, "ipyparallel", workdir, reference,
                      lambda: client[:].apply_sync(os.getpid))
    finally:
        if client is not None:
            client.close()
        cluster.stop_cluster_sync()


def run_round(engine, scenario, workdir, reference_path):
    """In the round's process: run it, write ``result.json`` (status, message)."""
    import pickle
    import traceback

    with open(reference_path, "rb") as file:
        reference = pickle.load(file)
    try:
        {"dask": on_dask, "ipyparallel": on_ipyparallel}[engine](scenario, workdir, reference)
        status, message = "passed", ""
    except Exception as error:  # noqa: BLE001 (recorded, the soak goes on)
        traceback.print_exc()
        status = "wrong" if isinstance(error, AssertionError) else "failed"
        message = first_line(error)
    with open(os.path.join(workdir, "result.json"), "w") as file:
        json.dump({"status": status, "message": message}, file)


def first_line(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:160]


# ---------------------------------------------------------------- the soak (parent process)

def kill_round_processes(proc, tag):
    """SIGKILL the round's process group and anything else carrying its tag (ipyparallel's
    controller and engines run in sessions of their own)."""
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if other.environ().get("PARML_SOAK_ROUND") == tag:
                other.kill()
    proc.wait()


def one_round(engine, scenario, workdir, reference_path, timeout):
    """Run one round in a process of its own; return its outcome."""
    os.makedirs(workdir)
    path = os.pathsep.join(filter(None, [TESTS, HERE, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PARML_SOAK_ROUND=workdir, PYTHONPATH=path)
    command = [sys.executable, __file__, "--round", engine, scenario, workdir, reference_path]
    start, outcome = time.perf_counter(), {"status": "hung", "message": f"over {timeout:g} s"}
    with open(os.path.join(workdir, "log.txt"), "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=workdir)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
            outcome = {"status": "failed", "message": f"exit code {proc.returncode}, no result"}
        kill_round_processes(proc, workdir)  # a hung round, or stragglers of a finished one
    outcome.update(wall_s=time.perf_counter() - start, load=os.getloadavg()[0])
    with contextlib.suppress(FileNotFoundError), open(os.path.join(workdir, "result.json")) as f:
        outcome.update(json.load(f))
    for path, name in [(os.path.dirname(workdir), "<tmp>"), (ROOT, "."),
                       (os.path.expanduser("~"), "~")]:  # no machine paths in the docs
        outcome["message"] = outcome["message"].replace(path, name).replace("|", "/")
    return outcome


def start_stress(seconds):
    """``stress-ng --cpu 2`` (or two busy-loop processes without it); returns (label, procs)."""
    if shutil.which("stress-ng"):
        command = ["stress-ng", "--cpu", "2", "--quiet", "--timeout", f"{int(seconds)}s"]
        return "stress-ng --cpu 2", [subprocess.Popen(command, start_new_session=True)]
    loop = "import os, sys\nwhile os.getppid() == int(sys.argv[1]): pass"
    return "2 busy-loop processes", [
        subprocess.Popen([sys.executable, "-c", loop, str(os.getpid())],
                         start_new_session=True) for _ in range(2)]


def stop_stress(procs):
    for proc in procs:  # each leads its process group (stress-ng's workers included)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def summary(engine, scenario, stress, outcomes, timeout):
    from _harness import environment

    walls = [o["wall_s"] for o in outcomes]
    messages = Counter(f"{o['status']}: {o['message']}" for o in outcomes
                       if o["status"] != "passed")
    return {"engine": engine, "scenario": scenario, "what": SCENARIOS[scenario],
            "stress": stress, "rounds": len(outcomes), "timeout_s": timeout,
            **{s: sum(o["status"] == s for o in outcomes)
               for s in ("passed", "wrong", "failed", "hung")},
            "median_s": round(statistics.median(walls), 1), "max_s": round(max(walls), 1),
            "load_avg_1min": round(statistics.median(o["load"] for o in outcomes), 2),
            "messages": messages, "separate": (engine, scenario) in SEPARATE,
            "environment": environment()}


def merge(path, entries):
    """Update only this run's (engine, scenario, stress) entries of the JSON file."""
    saved = {"ratios": {}, "entries": {}}  # "ratios": run_all.py reads every results/*.json
    if os.path.exists(path):
        with open(path) as file:
            saved = json.load(file)
    for entry in entries:
        saved["entries"][f"{entry['engine']} {entry['scenario']} {entry['stress']}"] = entry
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        json.dump(saved, file, indent=1, sort_keys=True)
    return saved


INTRO = """# Soak: worker deaths on Dask and ipyparallel

`benchmarks/soak_faults.py`, outside the test run, repeats the worker-death scenarios. Each
round, in a process of its own, starts a fresh cluster on loopback (Dask: a LocalCluster of 2
one-thread worker processes, default settings; ipyparallel: a controller and 3 engines), runs
one search (4 candidates x cv=3, 450 digits) and stops the cluster; a round over the time limit
is killed, cluster included, and counted as hung. (1) A fit kills its worker once, or (3) a
worker is SIGKILLed from outside once the first fits are back: `cv_results_` must equal
scikit-learn's. (2) A fit always kills its worker: a `FitFailedWarning`, NaN for it and
scikit-learn's mean test scores for the other candidates. Run it with
`python benchmarks/soak_faults.py --rounds 20` (add `--stress` for `stress-ng --cpu 2`
meanwhile, `--quick` for 3 rounds). Times are wall seconds per round (process and cluster
start and stop, search); load avg is the median 1-minute load average after each round.
"""
HEADER = ["engine", "scenario", "CPU stress", "rounds", "passed", "wrong", "failed", "hung",
          "median s", "max s", "load avg", "first lines of errors"]


def write_page(path, saved):
    from _harness import table

    def rows(separate):
        chosen = sorted((e for e in saved["entries"].values() if e["separate"] == separate),
                        key=lambda e: (e["engine"], e["scenario"], e["stress"]))
        return [[e["engine"], f"({e['scenario']}) {e['what']}", e["stress"], e["rounds"],
                 e["passed"], e["wrong"], e["failed"], e["hung"], e["median_s"], e["max_s"],
                 e["load_avg_1min"], "; ".join(f"{n} x {m}" for m, n in e["messages"].items())]
                for e in chosen]

    environments = sorted({e["environment"] for e in saved["entries"].values()})
    with open(path, "w") as file:
        file.write("\n".join([INTRO, *[f"Environment: {env}." for env in environments], "",
                              table(rows(False), HEADER), "",
                              *(["Known open problems, apart:", "", table(rows(True), HEADER),
                                 ""] if rows(True) else [])]))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--engines", default="dask,ipyparallel")
    parser.add_argument("--stress", action="store_true", help="run stress-ng --cpu 2 meanwhile")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per round")
    parser.add_argument("--quick", action="store_true", help="3 rounds, a smoke run")
    parser.add_argument("--out", default=OUT, help="the JSON results (merged)")
    parser.add_argument("--page", default=PAGE, help="the markdown page, from the JSON")
    parser.add_argument("--round", nargs=4, help=argparse.SUPPRESS)
    return parser.parse_args()


def soak(plan, rounds, tmp, timeout):
    """Run ``rounds`` rounds of each (engine, scenario); return their outcomes."""
    import pickle

    from sklearn.model_selection import GridSearchCV

    reference = os.path.join(tmp, "reference.pkl")  # scikit-learn's, computed once
    with open(reference, "wb") as file:
        pickle.dump(GridSearchCV(CountingClassifier(), GRID, cv=3).fit(*data()), file)
    outcomes = {}
    for engine, scenario in plan:
        for r in range(rounds):
            workdir = os.path.join(tmp, f"{engine}-{scenario}-{r}")
            o = one_round(engine, scenario, workdir, reference, timeout)
            outcomes.setdefault((engine, scenario), []).append(o)
            print(f"{engine} ({scenario}) round {r + 1}/{rounds}: {o['status']} in "
                  f"{o['wall_s']:.1f} s {o['message']}", flush=True)
    return outcomes


def main():
    args = parse_args()
    if args.round:
        return run_round(*args.round)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the finally clause runs
    plan = [(e, s) for e in args.engines.split(",") if e
            for s in (["1", "2", "3"] if e == "dask" else ["1", "3", "2"])]
    rounds = 3 if args.quick else args.rounds
    tmp = tempfile.mkdtemp(prefix="parml-soak-")
    stress, procs = ("none", [])
    if args.stress:
        stress, procs = start_stress(len(plan) * rounds * (args.timeout + 30) + 60)
    try:
        outcomes = soak(plan, rounds, tmp, args.timeout)
    finally:
        stop_stress(procs)
    entries = [summary(e, s, stress, o, args.timeout) for (e, s), o in outcomes.items()]
    write_page(args.page, merge(args.out, entries))
    print(f"wrote {os.path.relpath(args.out)} and {os.path.relpath(args.page)}")
    if all(o["status"] == "passed" for runs in outcomes.values() for o in runs):
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    print(f"logs of the rounds kept in {tmp}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
