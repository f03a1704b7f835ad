"""Cluster mode (DESIGN.md §3.7, docs/cluster.md) recovery and admission,
end to end, each case on a fresh `nats-server -js` with replicas of the
real binary (ack_wait 2s):

- a redelivered item counted once: replica A runs with
  SLUICE_CLUSTER_FAULT=after_outcome_published:1, so it exits (status 137)
  after storing a batch's outcomes and before acknowledging its items; the
  job ends done on B with exact counts, every seq once, and B counts the
  redeliveries (sluice_cluster_redelivered_total);
- the accepting replica dies between storing a job's items and creating
  its record (SLUICE_CLUSTER_FAULT=after_items_published:1): the job never
  existed; the other replica lists and runs nothing of it, serves other
  jobs, and drops its items after handing them back for 30 s;
- a job over jobs.max_job_result_bytes: the ?wait= answer on the
  accepting replica (sealed from a counting mirror), the status on the
  other and its result pages agree on what counts `cancelled`;
- every replica down, then up: both replicas killed with -9 mid-job, two
  new ones started on the same NATS and prefix; the job resumes and ends
  done with exact counts, every seq once;
- 429 cluster-wide: with jobs.max_pending_items 100 and 80 items pending,
  50 more get 429 with Retry-After on the accepting replica and on the
  other one; 150 items get 413 on both; the refusals leave nothing in the
  items stream; the 80-item job is then cancelled with DELETE;
- ordered across replicas: an `ordered: true` pipeline run by 3 replicas;
  the results read on a replica that did not accept the job are in seq
  order while it runs (a prefix) and once it is done (0..599). The same
  items posted with "ordered": false show how far the outcome log itself
  is out of order, i.e. that the ordered check could fail.

    /usr/bin/python3 tests/e2e/cluster_recovery_test.py build/dev/service/sluice
"""
import contextlib
import io
import time

from nats_server import (NatsServer, check_done_exactly, check_every_seq_once,
                         cluster_config, metric_sum, read_results,
                         start_replica, wait_final, wait_until, work_items)
from sluice_server import SluiceServer, binary_from_argv, check

REDELIVERED = "sluice_cluster_redelivered_total"


def post(server, n, what, pipeline="work"):
    status, accepted = server.json("POST", "/v1/jobs?pipeline=" + pipeline,
                                   work_items(n))
    check(status == 202 and accepted["items"] == n,
          "%s: POST %d items: %s %s" % (what, n, status, accepted))
    return accepted["id"]


def finishes_exactly(server, job_id, n, what, timeout=30):
    job = wait_final(server, job_id, timeout, what)
    check_done_exactly(job, n, what)
    records = read_results(server, job_id)
    check_every_seq_once(records, n, what + ", results")
    return job, records


def start_replica_with_env(stack, binary, config_text, name, env):
    """start_replica, with `env` added to the replica's environment."""
    server = stack.enter_context(SluiceServer(binary, config_text, env=env))
    check(wait_until(lambda: server.request("GET", "/readyz")[0] == 200, 20),
          "replica %s: /readyz is not 200 after 20s; log:\n%s"
          % (name, server.log()))
    return server


def duplicates_are_noticed(records, n):
    """The every-seq-once check fails on a seq stored twice, whether as an
    extra record or in place of another seq: it counts occurrences."""
    extra = records + [records[n // 2]]
    in_place = [records[1]] + records[1:]
    for bad in (extra, in_place):
        noticed = False
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                check_every_seq_once(bad, n, "self-test")
            except SystemExit:
                noticed = True
        check(noticed, "check_every_seq_once missed a duplicate seq: the "
              "redelivery check could not fail")


def redelivered_counted_once(binary):
    """A dies on its first outcome batch, outcomes stored, items not acked:
    after ack_wait B gets them again and must not count them twice. The
    job must outlast ack_wait after the crash, or it is sealed from the
    stored outcomes before anything comes back: 4,000 items of 20 ms; each
    replica takes about 1,024 at a time (8 workers: about 2.6 s a batch),
    so A dies at about 2.6 s and B still has about 5 s of work."""
    n = 4000
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats, delay="20ms")
        a = start_replica_with_env(
            stack, binary, config, "A",
            {"SLUICE_CLUSTER_FAULT": "after_outcome_published:1"})
        b = start_replica(stack, binary, config, "B")
        job_id = post(b, n, "redelivery")
        check(wait_until(lambda: a.proc.poll() is not None, 30),
              "A did not reach after_outcome_published within 30 s "
              "(the test proves nothing); A's log:\n%s" % a.log())
        check(a.proc.returncode == 137 and
              "SLUICE_CLUSTER_FAULT" in a.log(),
              "A exited with %s, not the fault's 137; log:\n%s"
              % (a.proc.returncode, a.log()))
        job, records = finishes_exactly(b, job_id, n,
                                        "after A died unacked, on B")
        redelivered = metric_sum(b, REDELIVERED) or 0
        check(redelivered >= 1,
              "B's %s is %s: nothing A held came back, so no redelivery was "
              "tested; job %s" % (REDELIVERED, redelivered, job))
        duplicates_are_noticed(records, n)
        print("redelivery: A exited 137 at its first outcome batch; done on B,"
              " %d records, each seq once; B redelivered %d, duplicate "
              "outcomes refused %d" % (len(records), redelivered,
                                       metric_sum(
                                           b, "sluice_cluster_duplicate_"
                                           "outcomes_total") or 0))


def acceptor_dies_before_its_record(binary):
    """A stores a job's items and dies (SLUICE_CLUSTER_FAULT=
    after_items_published:1) before creating its record: no 202 was sent,
    so the job never existed. B does not run its items, lists no such job,
    serves other jobs meanwhile, and drops the items once it has handed
    them back for 30 s (kAcceptTimeoutMs), leaving the items stream
    empty."""
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats)
        a = start_replica_with_env(
            stack, binary, config, "A",
            {"SLUICE_CLUSTER_FAULT": "after_items_published:1"})
        b = start_replica(stack, binary, config, "B")
        try:
            status, body = a.json("POST", "/v1/jobs?pipeline=work",
                                  work_items(10), timeout=10)
            check(False, "A answered %s %s instead of dying" % (status, body))
        except OSError:
            pass  # the connection broke: A exited
        check(wait_until(lambda: a.proc.poll() is not None, 10) and
              a.proc.returncode == 137 and "SLUICE_CLUSTER_FAULT" in a.log(),
              "A did not exit 137 at after_items_published; log:\n%s"
              % a.log())
        stored = nats.stream_state("t1_items")["messages"]
        check(stored == 1, "the dead submit's chunk is not in the items "
              "stream (the test proves nothing): %d messages" % stored)
        status, job = b.json("POST", "/v1/jobs?pipeline=work&wait=10",
                             work_items(10))
        check(status == 200 and job["state"] == "done",
              "a job on B while the orphaned items wait: %s %s"
              % (status, job))
        status, listed = b.json("GET", "/v1/jobs")
        check([j["id"] for j in listed["jobs"]] == [job["id"]],
              "B lists a job the dead submit never committed: %s" % listed)
        check(wait_until(
            lambda: nats.stream_state("t1_items")["messages"] == 0, 45,
            interval=0.5),
              "the dead submit's items are still stored after 45 s: %s"
              % nats.stream_state("t1_items"))
        acked = metric_sum(b, "sluice_cluster_acked_total")
        check(acked == 10, "B acked %s items, not its own job's 10: it ran "
              "the dead submit's items" % acked)


def result_cap_counted_alike(binary):
    """A job whose results pass jobs.max_job_result_bytes (512 KiB here,
    about 3,000 of its 6,000 records as a mirror holds them, while a batch
    of at most 1,024 items stays under it on the replica running it):
    the accepting replica seals it from a counting mirror, which keeps no
    results, yet counts the records past the cap `cancelled` as a replica
    holding them does. The ?wait= answer on A, the status on B and B's
    result pages agree."""
    n = 6000  # over 256 items: A follows the job with a counting mirror
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = (cluster_config(nats, delay="1ms") +
                  "jobs: { max_job_result_bytes: 512KiB }\n")
        a = start_replica(stack, binary, config, "A")
        b = start_replica(stack, binary, config, "B")
        status, job = a.json("POST", "/v1/jobs?pipeline=work&wait=30",
                             work_items(n), timeout=40)
        items = job.get("items", {}) if job else {}
        check(status == 200 and job["state"] == "done" and
              0 < items.get("out", 0) < n and
              items["out"] + items["cancelled"] == n,
              "the capped job's ?wait= answer on A: %s %s" % (status, job))
        on_b = wait_final(b, job["id"], 15, "the capped job on B")
        check(on_b["items"] == items,
              "the capped job's counts: %s on A, %s on B"
              % (items, on_b["items"]))
        shown = len(read_results(b, job["id"]))
        check(shown == items["out"],
              "B shows %d records of the capped job, its counts say out=%d"
              % (shown, items["out"]))


def every_replica_down_then_up(binary):
    """4,000 items of 10 ms (about 2.6 s on 2 replicas): both are killed
    once items completed, two new replicas finish the job. A replica
    holds up to 1,024 items and acks them as one batch (1.3 s on its 8
    workers), so each must take two rounds for a kill to land mid-job."""
    n = 4000
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats, delay="10ms")
        a = start_replica(stack, binary, config, "A")
        b = start_replica(stack, binary, config, "B")
        job_id = post(a, n, "all down")
        seen = [None]

        def some_completed():
            seen[0] = a.json("GET", "/v1/jobs/" + job_id)[1]
            return seen[0]["items"]["completed"] >= 100
        check(wait_until(some_completed, 20, interval=0.02),
              "no items completed within 20 s: %s" % seen[0])
        a.kill9()
        b.kill9()
        completed = seen[0]["items"]["completed"]
        check(seen[0]["state"] in ("queued", "running") and completed < n,
              "the job ended before the replicas were killed (the test "
              "proves nothing): %s" % seen[0])
        restarted = time.monotonic()
        c = start_replica(stack, binary, config, "C")
        d = start_replica(stack, binary, config, "D")
        on_c, _ = finishes_exactly(c, job_id, n, "after all replicas died, "
                                   "on new replica C")
        on_d = wait_final(d, job_id, 10, "after all replicas died, on D")
        check(on_c == on_d, "C and D answer the same status:\n%s\n%s"
              % (on_c, on_d))
        print("all down, then up: killed at %d/%d completed; done on the "
              "new replicas %.1f s after they started"
              % (completed, n, time.monotonic() - restarted))


SLOW = """
  - name: slow
    stages:
      - name: nap
        processor: { type: delay, duration: 200ms }
        workers: 1
    aggregate: { type: count }
jobs: { max_pending_items: 100 }
"""


def header(headers, name):
    return {k.lower(): v for k, v in headers.items()}.get(name.lower())


def refused(server, n, code, status_want):
    """(refused as wanted, what was answered) for a POST of n items."""
    status, headers, raw = server.request(
        "POST", "/v1/jobs?pipeline=slow", work_items(n))
    text = raw.decode(errors="replace")
    return (status == status_want and ('"%s"' % code) in text,
            (status, header(headers, "Retry-After"), text[:300]))


def over_capacity_cluster_wide(binary):
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats) + SLOW
        a = start_replica(stack, binary, config, "A")
        b = start_replica(stack, binary, config, "B")
        job_id = post(a, 80, "80 of 100", pipeline="slow")

        ok, answer = refused(a, 50, "over_capacity", 429)
        check(ok and answer[1], "50 more on A, 80 of 100 pending: want 429 "
              "over_capacity with Retry-After, got %s" % (answer,))
        print("429 on A: Retry-After %s; %s" % (answer[1], answer[2]))

        last = [None]

        def b_refuses():
            ok, last[0] = refused(b, 50, "over_capacity", 429)
            check(last[0][0] != 202, "B accepted 50 items with 80 of 100 "
                  "pending in the cluster: %s" % (last[0],))
            return ok and last[0][1]
        started = time.monotonic()
        check(wait_until(b_refuses, 2, interval=0.1),
              "50 more on B: want 429 over_capacity with Retry-After within "
              "2 s, last answer %s" % (last[0],))
        print("429 on B after %.2f s: Retry-After %s; %s"
              % (time.monotonic() - started, last[0][1], last[0][2]))

        # The answer above may come from the items stream's own limit (the
        # submit publishes, is refused, rolls back). Once B's sample of the
        # stream shows the 80, B refuses before publishing anything.
        gauge = [None]

        def b_sees_them():
            gauge[0] = metric_sum(b, "sluice_cluster_pending_items")
            return gauge[0] is not None and gauge[0] > 50
        check(wait_until(b_sees_them, 2, interval=0.1),
              "B's sluice_cluster_pending_items is %s 2 s after 80 items "
              "were accepted on A" % gauge[0])
        ok, answer = refused(b, 50, "over_capacity", 429)
        check(ok and answer[1], "50 more on B, which counts %s pending: want"
              " 429 with Retry-After, got %s" % (gauge[0], answer))
        print("429 on B counting %d pending: %s" % (gauge[0], answer[2]))

        for name, server in (("A", a), ("B", b)):
            ok, answer = refused(server, 150, "job_too_large", 413)
            check(ok, "150 items on %s (max_pending_items 100): want 413 "
                  "job_too_large, got %s" % (name, answer))
        # A refusal leaves nothing behind: the stream holds the 80 at most.
        pending = [None]

        def at_most_80():
            pending[0] = metric_sum(b, "sluice_cluster_pending_items")
            return pending[0] is not None and pending[0] <= 80
        check(wait_until(at_most_80, 3, interval=0.1),
              "the refused jobs left items behind: B's "
              "sluice_cluster_pending_items %s" % pending[0])

        status, body = a.json("DELETE", "/v1/jobs/" + job_id)
        check(status == 200, "DELETE on A: %s %s" % (status, body))
        for name, server in (("A", a), ("B", b)):
            job = wait_final(server, job_id, 15, "the cancelled job on "
                             + name)
            items = job["items"]
            check(job["state"] == "cancelled" and items["in"] == 80 and
                  items["out"] + items["filtered"] + items["errors"] +
                  items["cancelled"] == 80,
                  "the 80-item job after DELETE, on %s: %s" % (name, job))
        print("413 on A and B; the 80-item job cancelled: %s" % items)


ORDERED = """
  - name: ord
    ordered: true
    stages:
      - name: mark
        processor: { type: set, fields: { /done: true } }
        workers: 4
      - name: wait
        processor: { type: delay, duration: 10ms }
        workers: 8
    aggregate: { type: count }
"""


def ordered_across_replicas(binary):
    """600 items of 10 ms on 3 replicas: each holds 64-item batches whose
    outcomes land in the log in whatever order the replicas finish."""
    n = 600
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats) + ORDERED
        a, b, c = (start_replica(stack, binary, config, name)
                   for name in "ABC")
        job_id = post(a, n, "ordered", pipeline="ord")
        check(wait_until(lambda: c.request("GET", "/v1/jobs/" + job_id)[0]
                         == 200, 5), "C does not know the ordered job")
        partial = []

        def some_results():  # the first records C shows, while it runs
            partial[:] = read_results(c, job_id, page=100)
            return len(partial) > 0
        check(wait_until(some_results, 20, interval=0.02),
              "C shows no result of the ordered job within 20 s")
        seqs = [r["seq"] for r in partial]
        check(seqs == list(range(len(seqs))),
              "the first results of the ordered job on C are not a prefix "
              "in seq order: %s" % seqs[:40])

        job = wait_final(c, job_id, 30, "ordered, on C")
        check_done_exactly(job, n, "ordered, on C")
        for name, server in (("C", c), ("B", b)):
            records = read_results(server, job_id, page=100)
            seqs = [r["seq"] for r in records]
            check(seqs == list(range(n)),
                  "the ordered job's results on %s are not 0..%d in order: "
                  "first misplaced at %s" % (name, n - 1, next(
                      (i for i, s in enumerate(seqs) if s != i), len(seqs))))
            check_every_seq_once(records, n, "ordered, on " + name)

        status, accepted = a.json("POST", "/v1/jobs", {
            "pipeline": "ord", "items": work_items(n), "ordered": False})
        check(status == 202, "the unordered twin: %s %s" % (status, accepted))
        _, records = finishes_exactly(c, accepted["id"], n,
                                      "the unordered twin, on C")
        misplaced = sum(1 for i, r in enumerate(records) if r["seq"] != i)
        print("ordered: %d records in seq order on C and B (first read on C"
              " while running: %d records, a prefix); the same items "
              "unordered: %d of %d out of place in the log%s"
              % (n, len(partial), misplaced, n,
                 "" if misplaced else " (this run the log was in order "
                 "anyway, so the ordered check proved little)"))


def main():
    binary = binary_from_argv()
    started = time.monotonic()
    for case in (redelivered_counted_once, acceptor_dies_before_its_record,
                 result_cap_counted_alike,
                 every_replica_down_then_up,
                 over_capacity_cluster_wide, ordered_across_replicas):
        case_started = time.monotonic()
        case(binary)
        print("  %s: %.1f s" % (case.__name__,
                                time.monotonic() - case_started), flush=True)
    print("cluster recovery: ok in %.1f s" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
