"""Cluster mode (issue 14, docs/cluster.md) chaos load test: a real
`nats-server -js` and 3 replicas of the real binary (ack_wait 2s, a
`work` pipeline: a `set` stage of 4 workers, a 1 ms `delay` stage of 8
that paces it, a count aggregate), while a killer thread sends kill -9 to
one random replica every 0.5-1.5 s and restarts it at once (same config,
a new port). A run with fewer than MIN_KILLS kills fails: it tested no
fault.

Meanwhile N items in J jobs are posted round-robin to the living replicas;
a refused connection, a broken answer, 503 or 429 is retried on the next
replica after a short back-off. jobs.max_pending_items is N/4, so
admission paces the posts and they go on while replicas die. Once every
job is final (or the chaos budget is spent) the killer stops, the jobs
finish, and each one must be `done` with exact counts (in == out ==
completed == its items, aggregate == its items) and every seq exactly once
in its results (occurrences counted, not a set). Jobs whose 202 was lost
with a killed replica (orphans, found in GET /v1/jobs) are held to the
same checks with their own `in`.

The whole run is bounded by a hard deadline (SLUICE_CHAOS_DEADLINE, 110 s
by default at CI scale): past it, a watchdog dumps what is unfinished,
kills every child and exits 1. On any failure the unfinished or wrong
jobs' status JSON and every replica's log (the killed ones' too) go to
$SLUICE_E2E_ARTIFACTS/cluster_chaos/ and a summary to stderr.

    /usr/bin/python3 tests/e2e/cluster_chaos_test.py build/dev/service/sluice
    SLUICE_CHAOS_ITEMS=1000000 SLUICE_CHAOS_JOBS=200 \\
        /usr/bin/python3 tests/e2e/cluster_chaos_test.py build/dev/service/sluice

The binary is copied to a temporary directory first, so a rebuild during
the run does not break the restarts.
"""
import _thread
import contextlib
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

from nats_server import (NatsServer, check_done_exactly, check_every_seq_once,
                         metric_sum, read_results)
from sluice_server import SluiceServer, binary_from_argv

CI_ITEMS, CI_JOBS, CI_DEADLINE = 120000, 40, 110.0
REPLICAS = 3
KILL_EVERY = (0.5, 1.5)     # seconds between two kills, uniform
MIN_KILLS = 3               # fewer while the jobs ran: the run proves nothing
DRAIN = 25.0                # seconds kept after the killer stops
HTTP_ERRORS = (OSError, http.client.HTTPException, ValueError)

CONFIG = """
cluster:
  nats: { url: "%(url)s", prefix: chaos, ack_wait: 2s }
jobs: { max_pending_items: %(pending)d, max_retained_bytes: 1GiB }
pipelines:
  - name: work
    stages:
      - name: mark
        processor: { type: set, fields: { /done: true } }
        workers: 4
      # At most 8,000 items/s per replica, so that the CI-scale run lasts
      # long enough (5 s at least) for MIN_KILLS kills to land in it.
      - name: pace
        processor: { type: delay, duration: 1ms }
        workers: 8
    aggregate: { type: count }
"""


def settings():
    """(items, jobs, deadline seconds) from the environment."""
    items = int(os.environ.get("SLUICE_CHAOS_ITEMS", CI_ITEMS))
    jobs = int(os.environ.get("SLUICE_CHAOS_JOBS", CI_JOBS))
    at_ci_scale = (items, jobs) == (CI_ITEMS, CI_JOBS)
    deadline = float(os.environ.get("SLUICE_CHAOS_DEADLINE",
                                    CI_DEADLINE if at_ci_scale else 3600))
    return items, jobs, deadline


class Cluster:
    """The replicas: REPLICAS slots, each a running (or just killed)
    SluiceServer; killed ones are kept for their logs. Thread-safe: the
    killer thread restarts slots while the main thread posts and reads."""

    def __init__(self, binary, config):
        self.binary, self.config = binary, config
        self._lock = threading.Lock()
        self._restarting = threading.Lock()  # held through a kill+restart
        self._slots, self.killed = [], []
        self._next, self._born = 0, 0
        self._closed = False

    def start(self):
        for _ in range(REPLICAS):
            self._slots.append(self._spawn())

    def _spawn(self):
        with self._lock:
            self._born += 1
            name = "r%d" % self._born
        server = SluiceServer(self.binary, self.config)
        server.name = name
        server.start()  # RuntimeError, with its log, if it never listens
        return server

    def next(self):
        """The next slot's replica, round-robin (it may be dead)."""
        with self._lock:
            self._next = (self._next + 1) % len(self._slots)
            return self._slots[self._next]

    def living(self):
        with self._lock:
            return [s for s in self._slots if s.proc.poll() is None]

    def everyone(self):
        with self._lock:
            return self._slots + self.killed

    def kill_and_restart(self, slot):
        """kill -9 the replica in `slot`, then start its successor; returns
        (the victim's name, the successor's), or None once closed."""
        with self._restarting:
            with self._lock:
                if self._closed:
                    return None
                victim = self._slots[slot]
                victim.kill9()
                self.killed.append(victim)
            successor = self._spawn()
            with self._lock:
                self._slots[slot] = successor
            return victim.name, successor.name

    def close(self, kill=False):
        """Stops every replica (SIGTERM, or SIGKILL with kill) and removes
        their config directories; no later restart survives."""
        with self._lock:
            self._closed = True
        # Waits for a restart under way, so its replica is stopped too.
        got = self._restarting.acquire(timeout=40)
        for server in self.everyone():
            if kill:
                server.kill9()
            server.stop()
        if got:
            self._restarting.release()


class Killer(threading.Thread):
    """kill -9 of one random replica every KILL_EVERY seconds, each
    restarted at once, until stop(). An exception (a replica that does not
    restart) ends the loop and is kept in `error`."""

    def __init__(self, cluster, rng, started):
        super().__init__(name="killer", daemon=True)
        self.cluster, self.rng, self.started = cluster, rng, started
        self._halt = threading.Event()
        self.kills, self.error = 0, None

    def run(self):
        try:
            while not self._halt.wait(self.rng.uniform(*KILL_EVERY)):
                at = time.monotonic()
                names = self.cluster.kill_and_restart(
                    self.rng.randrange(REPLICAS))
                if names:
                    self.kills += 1
                    print("%6.1f s: kill -9 %s, %s listening %.2f s later"
                          % ((at - self.started,) + names +
                             (time.monotonic() - at,)), flush=True)
        except Exception as e:  # pylint: disable=broad-except
            self.error = "%s: %s" % (type(e).__name__, e)

    def stop(self):
        self._halt.set()
        self.join()


class Stats:
    """What the posts met. Used by the main thread only."""

    def __init__(self):
        self.refused = self.broken = self.throttled = self.unavailable = 0


def post_job(cluster, body, n, stats, deadline):
    """The id of a job of n items posted to some living replica: each
    failed attempt is retried on the next one. None past deadline."""
    while time.monotonic() < deadline:
        server = cluster.next()
        try:
            status, _, raw = server.request(
                "POST", "/v1/jobs?pipeline=work", body,
                headers={"Content-Type": "application/json"}, timeout=15)
            answer = json.loads(raw) if status == 202 else None
        except HTTP_ERRORS as e:
            if isinstance(getattr(e, "reason", e), ConnectionRefusedError):
                stats.refused += 1
            else:  # the replica died during the POST
                stats.broken += 1
            time.sleep(0.05)
            continue
        if status == 202 and answer.get("items") == n:
            return answer["id"]
        if status not in (429, 503):
            fail_now("POST of %d items to %s: %s %s"
                     % (n, server.name, status, raw[:300]))
        if status == 429:
            stats.throttled += 1
        else:
            stats.unavailable += 1
        time.sleep(0.1 + 0.1 * random.random())
    return None


def job_sizes(items, jobs):
    """items split over jobs as evenly as possible."""
    return [items // jobs + (1 if j < items % jobs else 0)
            for j in range(jobs)]


def post_all(cluster, sizes, stats, deadline, posted):
    """Posts a job of each size until deadline; adds {job id: its item
    count} to posted as each is accepted."""
    bodies = {}
    for n in sizes:
        if n not in bodies:
            bodies[n] = json.dumps([{"n": k} for k in range(n)]).encode()
        job_id = post_job(cluster, bodies[n], n, stats, deadline)
        if job_id is None:
            break
        posted[job_id] = n


def list_jobs(cluster, timeout=10):
    """{id: status} of every job, from some living replica; {} when none
    answers now."""
    for server in cluster.living():
        try:
            status, body = server.json("GET", "/v1/jobs?limit=1000",
                                       timeout=timeout)
        except HTTP_ERRORS:
            continue
        if status == 200:
            return {job["id"]: job for job in body["jobs"]}
    return {}


FINAL = ("done", "failed", "cancelled")


def wait_all_final(cluster, ids, deadline):
    """True once every job in ids is final, False at deadline."""
    while time.monotonic() < deadline:
        jobs = list_jobs(cluster)
        if jobs and all(jobs.get(i, {}).get("state") in FINAL for i in ids):
            return True
        time.sleep(0.25)
    return False


class Progress(threading.Thread):
    """Samples the posted jobs every second until stop(), printing every
    5 s how many are final, their completed items and the items pending in
    the cluster; keeps the longest stall (no item completed while some job
    was unfinished) and what was pending then."""

    def __init__(self, cluster, posted, started):
        super().__init__(name="progress", daemon=True)
        self.cluster, self.posted, self.started = cluster, posted, started
        self._halt = threading.Event()
        self.stall, self.stall_end, self.stall_pending = 0.0, 0.0, None
        self._moved, self._last = time.monotonic(), -1

    def run(self):
        tick = 0
        while not self._halt.wait(1):
            jobs, ids = list_jobs(self.cluster), list(self.posted)
            if not jobs:
                continue
            mine = [jobs.get(i, {}) for i in ids]
            final = sum(1 for j in mine if j.get("state") in FINAL)
            done = sum(j.get("items", {}).get("completed", 0) for j in mine)
            pending = self._pending()
            self._track(done, final < len(ids), pending)
            tick += 1
            if tick % 5 == 0:
                print("%6.1f s: %d of %d jobs posted and final, %d items "
                      "completed, %s pending" % (
                          time.monotonic() - self.started, final, len(ids),
                          done, pending), flush=True)

    def _pending(self):
        for server in self.cluster.living()[:1]:
            with contextlib.suppress(*HTTP_ERRORS):
                return metric_sum(server, "sluice_cluster_pending_items")
        return None

    def _track(self, done, unfinished, pending):
        now = time.monotonic()
        if done != self._last or not unfinished:
            self._moved, self._last = now, done
        elif now - self._moved > self.stall:
            self.stall, self.stall_pending = now - self._moved, pending
            self.stall_end = now - self.started

    def stop(self):
        self._halt.set()
        self.join()


def verify_job(server, job_id, n):
    """None if the job is done with exact counts and every seq once in its
    results; else its status (the failed check printed why)."""
    job = None
    try:
        status, job = server.json("GET", "/v1/jobs/" + job_id, timeout=30)
        if status != 200:
            return {"id": job_id, "http_status": status, "body": job}
        what = "job %s (%d items)" % (job_id, n)
        check_done_exactly(job, n, what)
        check_every_seq_once(read_results(server, job_id, page=10000), n,
                             what + ", results")
    except SystemExit:
        return job
    return None


def artifacts_dir():
    base = os.environ.get("SLUICE_E2E_ARTIFACTS") or tempfile.gettempdir()
    path = os.path.join(base, "cluster_chaos")
    os.makedirs(path, exist_ok=True)
    return path


def dump(cluster, nats, bad, reason):
    """Writes the bad jobs' status and every log to the artifacts dir and
    prints a summary; returns the dir."""
    path = artifacts_dir()
    with open(os.path.join(path, "jobs.json"), "w", encoding="utf-8") as f:
        json.dump({"reason": reason, "jobs": bad}, f, indent=1)
    for server in cluster.everyone():
        with open(os.path.join(path, server.name + ".log"), "w",
                  encoding="utf-8") as f:
            f.write(server.log())
    with open(os.path.join(path, "nats.log"), "w", encoding="utf-8") as f:
        f.write(nats.log())
    print("FAIL: %s\nbad jobs (%d): %s\nlogs and statuses in %s"
          % (reason, len(bad), json.dumps(bad)[:4000], path),
          file=sys.stderr, flush=True)
    for server in cluster.living():
        print("--- last lines of %s's log ---\n%s" % (
            server.name, "".join(server.log().splitlines(True)[-20:])),
            file=sys.stderr, flush=True)
    return path


def fail_now(message):
    print("FAIL: " + message, file=sys.stderr, flush=True)
    sys.exit(1)


class Watchdog:
    """The hard deadline: past it, dumps the unfinished jobs, kills every
    child and interrupts the main thread (whose `with` blocks then remove
    the temporary directories); if that has not ended the process 5 s
    later, removes `dirs` itself and exits 1."""

    def __init__(self, seconds, cluster, nats, expected, dirs):
        self.cluster, self.nats, self.expected = cluster, nats, expected
        self.dirs = dirs
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self):
        self._timer.cancel()

    def _fire(self):
        try:
            jobs = list_jobs(self.cluster, timeout=2)
            bad = [jobs.get(i, {"id": i, "unlisted": True})
                   for i in self.expected
                   if jobs.get(i, {}).get("state") != "done"]
            dump(self.cluster, self.nats, bad, "hard deadline reached")
        finally:
            self.cluster.close(kill=True)
            self.nats.kill()
            _thread.interrupt_main()
            time.sleep(5)
            for path in self.dirs:
                shutil.rmtree(path, ignore_errors=True)
            os._exit(1)  # pylint: disable=protected-access


def redeliveries(cluster):
    """(redelivered, duplicate outcomes refused), summed over the living
    replicas: partial, since the killed ones' counters died with them."""
    total = [0, 0]
    for server in cluster.living():
        for k, name in enumerate(("sluice_cluster_redelivered_total",
                                  "sluice_cluster_duplicate_outcomes_total")):
            total[k] += metric_sum(server, name) or 0
    return tuple(int(t) for t in total)


def verify_all(cluster, posted):
    """(bad job statuses, orphans found): every posted job and every orphan
    (a job whose 202 was lost with its replica) verified on one replica."""
    server = cluster.living()[0]
    orphans = {i: job["items"]["in"] for i, job in list_jobs(cluster).items()
               if i not in posted}
    bad = []
    for job_id, n in list(posted.items()) + list(orphans.items()):
        problem = verify_job(server, job_id, n)
        if problem is not None:
            bad.append(problem)
    return bad, orphans


def run_chaos(cluster, posted, sizes, stats, started, deadline):
    """Posts every job while the killer runs, waits for them to be final
    (the killer stopped DRAIN s before deadline at the latest); returns
    (all final, kills, the killer's error)."""
    seed = int(os.environ.get("SLUICE_CHAOS_SEED", time.time_ns() % 10**9))
    print("%d items in %d jobs; the killer's SLUICE_CHAOS_SEED=%d"
          % (sum(sizes), len(sizes), seed), flush=True)
    killer = Killer(cluster, random.Random(seed), started)
    killer.start()
    try:
        post_all(cluster, sizes, stats, deadline - 2 * DRAIN, posted)
        print("%6.1f s: %d jobs posted" % (time.monotonic() - started,
                                           len(posted)), flush=True)
        all_final = (len(posted) == len(sizes) and wait_all_final(
            cluster, posted, deadline - DRAIN))
    finally:
        killer.stop()
    if not all_final and len(posted) == len(sizes):
        print("%6.1f s: killer stopped, jobs not final yet"
              % (time.monotonic() - started), flush=True)
        all_final = wait_all_final(cluster, posted, deadline - 10)
    return all_final, killer.kills, killer.error


def chaos(cluster, nats, items, jobs, deadline_s, dirs):
    """Posts, kills, waits, verifies; returns the figures or exits 1.
    dirs: the temporary directories the watchdog removes if it must."""
    started = time.monotonic()
    posted, stats = {}, Stats()
    watchdog = Watchdog(deadline_s, cluster, nats, posted, dirs)
    progress = Progress(cluster, posted, started)
    progress.start()
    try:
        all_final, kills, error = run_chaos(
            cluster, posted, job_sizes(items, jobs), stats, started,
            started + deadline_s)
        finished = time.monotonic()
        progress.stop()
        if error or len(posted) < jobs or not all_final:
            reason = ("killer: %s" % error if error else
                      "%d of %d jobs posted" % (len(posted), jobs)
                      if len(posted) < jobs else "jobs not final in time")
            now = list_jobs(cluster)
            dump(cluster, nats, [now.get(i, {"id": i}) for i in posted
                                 if now.get(i, {}).get("state") != "done"],
                 reason)
            sys.exit(1)
        if kills < MIN_KILLS:
            print("only %d replicas were killed before every job ended "
                  "(%d asked): the run tested no fault; slow the `pace` "
                  "stage" % (kills, MIN_KILLS), file=sys.stderr)
            sys.exit(1)
        bad, orphans = verify_all(cluster, posted)
        if bad:
            dump(cluster, nats, bad, "%d jobs wrong" % len(bad))
            sys.exit(1)
    finally:
        watchdog.cancel()
        if progress.is_alive():
            progress.stop()
    return {"items": items, "jobs": jobs, "orphans": len(orphans),
            "orphan_items": sum(orphans.values()), "kills": kills,
            "busy": finished - started, "wall": time.monotonic() - started,
            "stats": stats, "redelivered": redeliveries(cluster),
            "stall": (progress.stall, progress.stall_end,
                      progress.stall_pending)}


def report(figures):
    redelivered, duplicates = figures["redelivered"]
    stats = figures["stats"]
    print("chaos: %(items)d items in %(jobs)d jobs (+%(orphans)d orphan jobs"
          ", %(orphan_items)d items), %(kills)d replicas killed -9 and "
          "restarted" % figures)
    print("  every job done with exact counts, every seq once; all final "
          "%.1f s after the start, %.0f items/s; checks %.1f s"
          % (figures["busy"], figures["items"] / figures["busy"],
             figures["wall"] - figures["busy"]))
    print("  posts retried: %d refused, %d broken (the replica died during "
          "the POST), %d x 429, %d x 503" % (stats.refused, stats.broken,
                                           stats.throttled,
                                           stats.unavailable))
    print("  longest stall: %.0f s without an item completed, ending at "
          "%.0f s, %s items pending" % figures["stall"])
    print("  redelivered %d, duplicate outcomes refused %d (summed over the"
          " %d last replicas: partial, the killed ones' counters are lost)"
          % (redelivered, duplicates, REPLICAS))


def main():
    binary = binary_from_argv()
    items, jobs, deadline_s = settings()
    with contextlib.ExitStack() as stack:
        copy_dir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="sluice-chaos-"))
        copied = os.path.join(copy_dir, "sluice")
        shutil.copy2(binary, copied)
        nats = stack.enter_context(NatsServer())
        config = CONFIG % {"url": nats.url,
                           "pending": max(items // 4, -(-items // jobs))}
        cluster = Cluster(copied, config)
        passed = []  # a clean SIGTERM when it passed; no waiting otherwise
        stack.callback(lambda: cluster.close(kill=not passed))
        cluster.start()
        try:
            report(chaos(cluster, nats, items, jobs, deadline_s,
                         [copy_dir, os.path.dirname(nats.store_dir)]))
        except KeyboardInterrupt:  # the watchdog's, or ^C
            sys.exit(1)
        passed.append(True)


if __name__ == "__main__":
    main()
