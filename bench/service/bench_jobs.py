"""bench_jobs: the job driver shared by scripts/bench's service and cluster suites.

Defines the `bulk` workload (10,000-item NDJSON jobs through filter -> set ->
sha256 with a count aggregate, section (a) of the service suite), a client
that runs a job to its end, a sequential one-item-job latency probe, CPU
readings from /proc, and the rate/table formatting both suites print.

The service suite imports it (PYTHONPATH=bench/service); the cluster suite
runs it as a script, once per measurement, each printing one JSON object:

  bench_jobs.py big --addrs H:P[,H:P...] --jobs N --cpu-pids P[,P...]
                    [--other-pid NAME=P ...] [--deadline S] [--cluster]
  bench_jobs.py latency --addr H:P --reqs N [--warmup N] --cpu-pids P[,P...]
                        [--other-pid NAME=P ...]

Thread-safety: run_job may be called from several threads at once (each
call has its own connection); the rest is meant for one thread.
"""
import argparse
import concurrent.futures
import http.client
import json
import math
import os
import sys
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
ITEMS = 10000          # items per big job
IN_FLIGHT = 2          # big jobs in flight at once
NDJSON = "application/x-ndjson"
ONE_ITEM = b'[{"a":1}]'  # the one-item job of the latency probe (and of wrk's post_json.lua)


def log(msg):
    """A progress line on stderr (stdout carries the JSON)."""
    print(msg, file=sys.stderr, flush=True)


def cpu_seconds(pid):
    """utime + stime of PID in seconds; raises OSError once it has exited."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_sum(pids):
    """utime + stime of all PIDS together, in seconds; raises OSError as cpu_seconds."""
    return sum(cpu_seconds(p) for p in pids)


def request(conn, method, path, body=None, ctype="application/json"):
    """One request on CONN; returns (status, parsed JSON body or None)."""
    headers = {"Content-Type": ctype} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else None)


def run_job(addr, pipeline, body, ctype, deadline_s):
    """POST a job to ADDR with ?wait, poll GET /v1/jobs/ID until it ends.

    Returns the final status object, or {"state": "HTTP <code>", ...} on a
    refusal, or {"state": "timed out (cancelled)"} after DELETE once
    DEADLINE_S has passed. Raises on a broken connection.
    """
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=deadline_s + 30)
    try:
        end = time.monotonic() + deadline_s
        wait = min(300.0, max(1.0, deadline_s))
        code, doc = request(conn, "POST", f"/v1/jobs?pipeline={pipeline}&wait={wait:.0f}", body, ctype)
        if code not in (200, 202):
            return {"state": f"HTTP {code}", "error": doc}
        if code == 200:
            return doc
        jid = doc["id"]
        while time.monotonic() < end:
            code, doc = request(conn, "GET", f"/v1/jobs/{jid}")
            if code != 200:
                return {"state": f"HTTP {code}", "error": doc, "id": jid}
            if doc["state"] not in ("queued", "running"):
                return doc
            time.sleep(0.05)
        request(conn, "DELETE", f"/v1/jobs/{jid}")
        return {"state": "timed out (cancelled)", "id": jid}
    finally:
        conn.close()


def bulk_body():
    """The NDJSON body of one big job: ITEMS items, a = i % 10."""
    return "".join(json.dumps({"i": i, "a": i % 10, "user": f"user-{i}@example.com"},
                              separators=(",", ":")) + "\n" for i in range(ITEMS)).encode()


BULK_RESULTS = sum(1 for i in range(ITEMS) if i % 10 >= 1)  # the filter keeps a >= 1


def bulk_ok(st):
    """Whether a big job's status shows it done with the exact counts."""
    items = st.get("items") or {}
    return (st.get("state") == "done" and items.get("in") == ITEMS
            and items.get("out") == BULK_RESULTS and not items.get("errors")
            and st.get("aggregate") == BULK_RESULTS)


def big_jobs(addrs, njobs, cpu_pids, other_pids=None, deadline_s=120):
    """Section (a): NJOBS big jobs to `bulk`, IN_FLIGHT at once, job k on ADDRS[k % len].

    First one untimed warm-up job per address. CPU is read from CPU_PIDS
    (summed: the servers) and from each of OTHER_PIDS {name: pid} apart.
    After the first job that is not as expected, the jobs not yet started
    are skipped, so a broken server costs one deadline, not NJOBS of them.
    Returns (summary dict, every job's final status); the summary's
    "first_bad" holds the first bad status.
    """
    other_pids = other_pids or {}
    body = bulk_body()
    log(f"   {njobs} jobs x {ITEMS} NDJSON items ({len(body) / 1e6:.2f} MB each), "
        f"{IN_FLIGHT} in flight over {len(addrs)} address(es), pipeline bulk")
    for addr in addrs:
        run_job(addr, "bulk", body, NDJSON, 60)  # warm-up, untimed
    broken = threading.Event()

    def one(k):
        if broken.is_set():
            return {"state": "skipped (an earlier job failed)"}
        st = run_job(addrs[k % len(addrs)], "bulk", body, NDJSON, deadline_s)
        if not bulk_ok(st):
            broken.set()
        return st

    c0, o0, t0 = cpu_sum(cpu_pids), {k: cpu_seconds(p) for k, p in other_pids.items()}, time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as ex:
        done = list(ex.map(one, range(njobs)))
    t1, c1 = time.monotonic(), cpu_sum(cpu_pids)
    o1 = {k: cpu_seconds(p) for k, p in other_pids.items()}
    bad = [d for d in done if not bulk_ok(d)]
    items = njobs * ITEMS
    res = {"jobs": njobs, "items_per_job": ITEMS, "results_per_job": BULK_RESULTS, "in_flight": IN_FLIGHT,
           "seconds": round(t1 - t0, 3), "items_per_second": items / (t1 - t0),
           "server_cpu_s": round(c1 - c0, 3),
           "server_cpu_s_per_million_items": (c1 - c0) / items * 1e6,
           "server_cores_used": (c1 - c0) / (t1 - t0), "bad_jobs": len(bad),
           "first_bad": bad[0] if bad else None}
    for k in other_pids:
        res[f"{k}_cpu_s"] = round(o1[k] - o0[k], 3)
        res[f"{k}_cpu_s_per_million_items"] = (o1[k] - o0[k]) / items * 1e6
    log(f"   {rate(res['items_per_second'])}, {res['server_cpu_s_per_million_items']:.2f} "
        f"server CPU-s per M items" + (f", {len(bad)} bad jobs" if bad else ""))
    return res, done


def cross_check(addrs, statuses, settle_s=10.0):
    """Reads each job of STATUSES on the next address: the counts any replica gives.

    A replica that did not take the POST folds the job's outcomes as it is
    asked, so it may trail: each job is read until it shows done with the
    exact counts, for SETTLE_S at most. Returns (the jobs never shown so
    there: their last status; the longest wait in ms for one that was).
    """
    wrong, lag_ms = [], 0.0
    for k, st in enumerate(statuses):
        if "id" not in st:
            continue
        host, port = addrs[(k + 1) % len(addrs)].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        t0 = time.monotonic()
        try:
            while True:
                code, doc = request(conn, "GET", f"/v1/jobs/{st['id']}")
                if code == 200 and bulk_ok(doc):
                    lag_ms = max(lag_ms, (time.monotonic() - t0) * 1000)
                    break
                if time.monotonic() - t0 > settle_s:
                    wrong.append({"status": code, "job": doc})
                    break
                time.sleep(0.02)
        finally:
            conn.close()
    return wrong, lag_ms


def acked_per_replica(addrs, pipeline="bulk"):
    """sluice_cluster_acked_total{pipeline} of each address: how the work was shared."""
    counts = []
    for addr in addrs:
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        want = f'sluice_cluster_acked_total{{pipeline="{pipeline}"}} '
        counts.append(next((float(l[len(want):]) for l in text.splitlines() if l.startswith(want)), None))
    return counts


def percentile(sorted_values, p):
    """Nearest-rank percentile P (0..100] of a sorted, non-empty list."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


def latency(addr, reqs, warmup, cpu_pids, other_pids=None, pipeline="bulk"):
    """REQS sequential one-item jobs `POST /v1/jobs?pipeline=P&wait=5` on one connection.

    WARMUP untimed ones first. Each must answer 200 with state done; after
    5 that do not, the probe stops (so a broken server costs seconds, not
    REQS x 5 s). Returns p50/p99/mean in ms and CPU us per job.
    """
    other_pids = other_pids or {}
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    samples, bad = [], []
    log(f"   {reqs} sequential one-item jobs (after {warmup} warm-up) on {addr}, wait=5")
    c0, o0 = None, None
    try:
        for i in range(warmup + reqs):
            if i == warmup:
                c0, o0 = cpu_sum(cpu_pids), {k: cpu_seconds(p) for k, p in other_pids.items()}
            t = time.perf_counter()
            code, doc = request(conn, "POST", f"/v1/jobs?pipeline={pipeline}&wait=5", ONE_ITEM)
            dt = (time.perf_counter() - t) * 1000
            if code != 200 or (doc or {}).get("state") != "done":
                bad.append({"status": code, "body": doc})
                if len(bad) >= 5:
                    break
            elif i >= warmup:
                samples.append(dt)
    finally:
        conn.close()
    c1 = cpu_sum(cpu_pids)
    o1 = {k: cpu_seconds(p) for k, p in other_pids.items()}
    samples.sort()
    n = len(samples)
    res = {"requests": reqs, "warmup": warmup, "ok": n, "bad": len(bad), "first_bad": bad[0] if bad else None,
           "p50_ms": percentile(samples, 50) if n else None, "p99_ms": percentile(samples, 99) if n else None,
           "mean_ms": sum(samples) / n if n else None,
           "server_cpu_us_per_job": (c1 - c0) / n * 1e6 if n and c0 is not None else None}
    for k in other_pids:
        res[f"{k}_cpu_us_per_job"] = (o1[k] - o0[k]) / n * 1e6 if n and o0 is not None else None
    log(f"   p50 {ms(res['p50_ms'])}, p99 {ms(res['p99_ms'])}" + (f", {len(bad)} bad" if bad else ""))
    return res


def rate(v):
    """A rate per second for a table: "1.23 k/s", or "-" for None."""
    if v is None:
        return "-"
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:.2f} {unit}/s"
    return f"{v:.1f} /s"


def ms(v):
    """Milliseconds for a table: "1.23 ms", or "-" for None."""
    return "-" if v is None else (f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms")


def table(head, rows):
    """Lines of a text table: the first column left-aligned, the others right."""
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = [" | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))) for r in [head] + rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return lines


def _main(argv):
    ap = argparse.ArgumentParser(prog="bench_jobs.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    big = sub.add_parser("big")
    big.add_argument("--addrs", required=True)
    big.add_argument("--jobs", type=int, required=True)
    big.add_argument("--deadline", type=float, default=60)
    big.add_argument("--cluster", action="store_true", help="also read each replica's acked items")
    lat = sub.add_parser("latency")
    lat.add_argument("--addr", required=True)
    lat.add_argument("--reqs", type=int, required=True)
    lat.add_argument("--warmup", type=int, default=20)
    for p in (big, lat):
        p.add_argument("--cpu-pids", required=True)
        p.add_argument("--other-pid", action="append", default=[], metavar="NAME=PID")
    a = ap.parse_args(argv)
    cpu_pids = [int(p) for p in a.cpu_pids.split(",")]
    others = {k: int(v) for k, v in (o.split("=", 1) for o in a.other_pid)}
    if a.cmd == "big":
        addrs = a.addrs.split(",")
        res, statuses = big_jobs(addrs, a.jobs, cpu_pids, others, a.deadline)
        if len(addrs) > 1:  # the counts must be the same on a replica that did not take the POST
            res["cross_check_wrong"], res["cross_check_lag_ms"] = cross_check(addrs, statuses)
        if a.cluster:
            res["acked_per_replica"] = acked_per_replica(addrs)
    else:
        res = latency(a.addr, a.reqs, a.warmup, cpu_pids, others)
    json.dump(res, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    _main(sys.argv[1:])
