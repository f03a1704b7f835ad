"""Cluster mode (DESIGN.md §3.7, docs/cluster.md) end to end: any replica
serves any job. A real `nats-server -js` and two replicas A and B of the
real binary with the same config. A job posted on A is read on B: status
with exact counts, every result once (NDJSON pages and a JSON page), its
WebSocket stream (replay, live, `done`), the job list; an unknown id is 404
on both; an NDJSON job posted on B is read on A; a 0-item job; a small job
sealed with its outcomes, its counts and aggregate the same everywhere; a
DELETE on B cancels a job accepted by A; a small job's ?wait= is answered
from its record without a consumer, also when a DELETE ends it; and both
replicas did part of the work
(`sluice_cluster_acked_total` on each).

    /usr/bin/python3 tests/e2e/cluster_api_test.py build/dev/service/sluice
"""
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time

from nats_server import (NatsServer, check_done_exactly, check_every_seq_once,
                         cluster_config, metric_sum, read_results,
                         start_replica, wait_final, wait_until, work_items)
from sluice_server import binary_from_argv, check

N = 2000  # 5 ms each on 8 workers per replica: long enough to share


def job_stream_frames(server, job_id, timeout=60):
    """The text frames of GET /v1/jobs/ID/stream on `server`, parsed, up to
    the server's close, and the close code. A minimal RFC 6455 client:
    server frames are unmasked; pings are not expected (the stream is never
    silent for server.idle_timeout)."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = ("GET /v1/jobs/%s/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (job_id, key))
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", server.port),
                                  timeout=timeout) as sock:
        sock.sendall(request.encode())
        stream = sock.makefile("rb")
        status = stream.readline().decode("latin-1")
        check(" 101 " in status, "job stream upgrade: %r" % status)
        while stream.readline() not in (b"\r\n", b""):
            pass
        frames, message = [], b""
        while time.monotonic() < deadline:
            head = stream.read(2)
            check(len(head) == 2, "the job stream ended without a close")
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", stream.read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", stream.read(8))[0]
            payload = stream.read(length)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if payload else None
                return frames, code
            if opcode in (0x0, 0x1):
                message += payload
                if head[0] & 0x80:  # FIN: the message is whole
                    frames.append(json.loads(message))
                    message = b""
        check(False, "the job stream did not close within %ss" % timeout)


def unknown_ids_are_404(a, b):
    for name, server in (("A", a), ("B", b)):
        for method, path in (("GET", "/v1/jobs/0123456789abcdef"),
                             ("GET", "/v1/jobs/0123456789abcdef/results"),
                             ("DELETE", "/v1/jobs/0123456789abcdef")):
            status, body = server.json(method, path)
            check(status == 404 and body["error"]["code"] == "unknown_job",
                  "%s %s on %s: %s %s" % (method, path, name, status, body))


def post_on_a_read_on_b(a, b):
    """Returns the job's id, done."""
    status, accepted = a.json("POST", "/v1/jobs?pipeline=work",
                              work_items(N))
    check(status == 202 and accepted["items"] == N,
          "POST on A: %s %s" % (status, accepted))
    job_id = accepted["id"]
    # B learns of the job through its KV watcher, milliseconds behind A.
    check(wait_until(lambda: b.request("GET", "/v1/jobs/" + job_id)[0]
                     == 200, 5), "B does not know the job A accepted")
    status, early = b.json("GET", "/v1/jobs/" + job_id)
    check(status == 200 and early["id"] == job_id and
          early["pipeline"] == "work" and early["items"]["in"] == N,
          "the job's status on B: %s %s" % (status, early))

    frames, code = job_stream_frames(b, job_id)  # opened while it runs
    check(code == 1000, "the job stream on B closed with %s" % code)
    check(frames and frames[-1]["type"] == "done",
          "the job stream on B did not end with done: %s" % frames[-1:])
    check_done_exactly(frames[-1]["job"], N, "the stream's done frame")
    results = [f for f in frames[:-1] if f["type"] == "result"]
    check(len(results) == len(frames) - 1,
          "frames other than results: %s"
          % [f for f in frames[:-1] if f["type"] != "result"][:3])
    check_every_seq_once([{"seq": f["seq"], "value": f["value"]}
                          for f in results], N, "the job stream on B")

    on_b = wait_final(b, job_id, 60, "on B")
    check_done_exactly(on_b, N, "status on B")
    on_a = wait_final(a, job_id, 10, "on A")
    check(on_a == on_b, "A and B answer the same status:\n%s\n%s"
          % (on_a, on_b))
    check_every_seq_once(read_results(b, job_id, page=500), N,
                         "NDJSON pages on B")
    status, page = a.json("GET", "/v1/jobs/%s/results?offset=10&limit=25"
                          % job_id)
    check(status == 200 and page["offset"] == 10 and
          page["next_offset"] == 35 and page["total"] == N and
          len(page["results"]) == 25, "a JSON page on A: %s %s"
          % (status, {k: v for k, v in (page or {}).items()
                      if k != "results"}))
    return job_id


def listed_everywhere(a, b, job_id):
    for name, server in (("A", a), ("B", b)):
        status, body = server.json("GET", "/v1/jobs")
        check(status == 200 and job_id in [j["id"] for j in body["jobs"]],
              "GET /v1/jobs on %s lists %s: %s" % (name, job_id, status))


def work_is_shared(a, b):
    acked = {name: metric_sum(server, "sluice_cluster_acked_total")
             for name, server in (("A", a), ("B", b))}
    check(all(v is not None and v > 0 for v in acked.values()),
          "both replicas acked items of the %d-item job: %s" % (N, acked))
    check(sum(acked.values()) >= N, "acked in all: %s" % acked)
    print("acked: %s" % acked)


def ndjson_on_b_read_on_a(a, b):
    body = "".join(json.dumps(item) + "\n" for item in work_items(50))
    status, accepted = b.json("POST", "/v1/jobs?pipeline=work", body,
                              {"Content-Type": "application/x-ndjson"})
    check(status == 202 and accepted["items"] == 50,
          "NDJSON POST on B: %s %s" % (status, accepted))
    job = wait_final(a, accepted["id"], 30, "NDJSON job on A")
    check_done_exactly(job, 50, "NDJSON job on A")
    check_every_seq_once(read_results(a, accepted["id"]), 50,
                         "NDJSON job's results on A")
    # Cluster mode stores the lines as sent, checked rather than parsed:
    # a bad line is still a 400 naming its byte offset, and nothing is
    # stored.
    before = len(b.json("GET", "/v1/jobs")[1]["jobs"])
    bad = '{"a": 1}\n{"a": 2,}\n{"a": 3}\n'
    status, body = b.json("POST", "/v1/jobs?pipeline=work", bad,
                          {"Content-Type": "application/x-ndjson"})
    check(status == 400 and body["error"]["code"] == "invalid_json" and
          body["error"]["offset"] == bad.index(",}") + 1,
          "a malformed NDJSON line on B: %s %s" % (status, body))
    after = len(b.json("GET", "/v1/jobs")[1]["jobs"])
    check(after == before, "the refused NDJSON POST left a job (%d jobs, "
          "%d before)" % (after, before))
    # A line may start with a UTF-8 byte order mark, which the parser
    # skips; stored as text it would break its whole chunk (the job would
    # never end), so it is dropped from the stored line.
    bom = '{"a": 1}\n\ufeff{"a": 2}\n'
    status, accepted = b.json("POST", "/v1/jobs?pipeline=work&wait=15", bom,
                              {"Content-Type": "application/x-ndjson"})
    check(status == 200 and accepted["state"] == "done" and
          accepted["items"]["out"] == 2,
          "an NDJSON line with a byte order mark: %s %s" % (status, accepted))


def empty_job(a, b):
    status, accepted = a.json("POST", "/v1/jobs?pipeline=work", [])
    check(status == 202 and accepted["items"] == 0,
          "POST [] on A: %s %s" % (status, accepted))
    job = wait_final(b, accepted["id"], 15, "the 0-item job on B")
    check_done_exactly(job, 0, "the 0-item job on B")
    status, page = b.json("GET", "/v1/jobs/%s/results" % accepted["id"])
    check(status == 200 and page["total"] == 0 and page["results"] == [],
          "the 0-item job's results: %s %s" % (status, page))


def seals(server, by):
    """sluice_cluster_seals_total{by=BY} on `server` (0 when absent)."""
    _, _, text = server.request("GET", "/metrics", timeout=10)
    prefix = 'sluice_cluster_seals_total{by="%s"} ' % by
    for line in text.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def small_job_sealed_with_its_outcomes(a, b):
    """A 5-item job fits one batch of one replica: that replica seals it
    with the batch's outcomes (sluice_cluster_seals_total{by="outcomes"}),
    and the seal's counts and aggregate (2 filtered, sum 2+3+4) are the
    ones every replica shows."""
    before = sum(seals(s, "outcomes") for s in (a, b))
    items = [{"n": n} for n in range(5)]
    status, job = a.json("POST", "/v1/jobs?pipeline=small&wait=10", items)
    check(status == 200 and job["state"] == "done",
          "POST ?wait=10 of a small job on A: %s %s" % (status, job))
    expected = {"in": 5, "out": 3, "filtered": 2, "errors": 0,
                "cancelled": 0, "completed": 5}
    for name, server in (("A", a), ("B", b)):
        shown = wait_final(server, job["id"], 10, "the small job on " + name)
        check(shown["state"] == "done" and shown["items"] == expected and
              shown["aggregate"] == 9,
              "the small job on %s: %s" % (name, shown))
    check(sum(seals(s, "outcomes") for s in (a, b)) == before + 1,
          "the small job was not sealed with its outcomes: %s"
          % {n: (seals(s, "outcomes"), seals(s, "sealer"))
             for n, s in (("A", a), ("B", b))})
    values = sorted(r["value"]["n"] for r in read_results(b, job["id"]))
    check(values == [2, 3, 4], "the small job's results on B: %s" % values)


def small_job_waited_on_without_a_consumer(nats, a, b):
    """A small job's ?wait= is answered from its final record: the
    accepting replica makes no consumer on the results stream to follow
    its log (that cost a consumer made and deleted per job). Its results,
    asked for afterwards on that replica, come from its log."""
    stream = "t1_results"
    before = nats.stream_state(stream)["consumers"]
    items = [{"n": n} for n in (1, 5, 7)]
    status, job = a.json("POST", "/v1/jobs?pipeline=small&wait=10", items)
    check(status == 200 and job["state"] == "done" and
          job["items"]["out"] == 2 and job["aggregate"] == 12,
          "POST ?wait=10 of a 3-item job on A: %s %s" % (status, job))
    after = nats.stream_state(stream)["consumers"]
    check(after <= before,
          "waiting on a small job made a consumer on %s (%d before, %d "
          "after)" % (stream, before, after))
    values = sorted(r["value"]["n"] for r in read_results(a, job["id"]))
    check(values == [5, 7], "the 3-item job's results on A: %s" % values)


def small_job_cancelled_while_waited_on(a, b):
    """A small job that a DELETE ends is not sealed with its outcomes: the
    ?wait= on the accepting replica is answered by the record the sealer
    writes. 80 items of 50 ms on 8 workers take 0.5 s; the DELETE on B
    comes once the job's slow stage has started on some replica."""
    answer = {}

    def post_and_wait():
        answer["reply"] = a.json("POST", "/v1/jobs?pipeline=slow&wait=20",
                                 work_items(80), timeout=30)
    ran = naps_run(a) + naps_run(b)
    poster = threading.Thread(target=post_and_wait)
    poster.start()
    check(wait_until(lambda: naps_run(a) + naps_run(b) > ran, 10,
                     interval=0.01),
          "the 80-item slow job did not start within 10 s")
    status, jobs = b.json("GET", "/v1/jobs?limit=1")
    job_id = jobs["jobs"][0]["id"]
    status, body = b.json("DELETE", "/v1/jobs/" + job_id)
    check(status == 200, "DELETE of the small job on B: %s %s"
          % (status, body))
    poster.join(30)
    check("reply" in answer, "the ?wait= POST did not answer within 30 s")
    status, job = answer["reply"]
    items = job.get("items", {})
    check(status == 200 and job["id"] == job_id and
          job["state"] == "cancelled" and items["in"] == 80 and
          items["cancelled"] > 0 and
          items["out"] + items["filtered"] + items["errors"] +
          items["cancelled"] == 80,
          "the cancelled small job's ?wait= answer on A: %s %s"
          % (status, job))


def naps_run(server):
    """Items the `slow` pipeline's `nap` stage finished on `server`."""
    _, _, text = server.request("GET", "/metrics", timeout=10)
    total = 0.0
    for line in text.decode().splitlines():
        if (line.startswith("sluice_stage_duration_seconds_count{") and
                'pipeline="slow"' in line and 'stage="nap"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cancel_on_b(a, b):
    """A job of 2,000 items at 50 ms on 16 workers needs about 6 s: a
    DELETE on B 1 s after the POST cancels it everywhere, the items the
    replicas are running included. (Each replica holds up to 1,024 items
    and stores their outcomes when all are done, so nothing shows the job
    started before a replica's whole batch is: the DELETE goes by time.)"""
    slow = 2000
    status, accepted = a.json("POST", "/v1/jobs?pipeline=slow",
                              work_items(slow))
    check(status == 202, "POST slow on A: %s %s" % (status, accepted))
    job_id = accepted["id"]
    time.sleep(1.0)
    status, body = b.json("DELETE", "/v1/jobs/" + job_id)
    check(status == 200 and body["id"] == job_id,
          "DELETE on B: %s %s" % (status, body))
    for name, server in (("B", b), ("A", a)):
        job = wait_final(server, job_id, 30, "the cancelled job on " + name)
        items = job["items"]
        check(job["state"] == "cancelled" and items["in"] == slow and
              items["cancelled"] > 0 and items["out"] < slow and
              items["out"] + items["filtered"] + items["errors"] +
              items["cancelled"] == slow,
              "the cancelled job on %s: %s" % (name, job))
    # The replicas' running batches of the job were cancelled too: their
    # slow stage stops taking the job's items (without that, each replica
    # runs its 1,000 items to the end, 320 more a second between them).
    ran = naps_run(a) + naps_run(b)
    time.sleep(1.0)
    more = naps_run(a) + naps_run(b) - ran
    check(more <= 40, "the slow stage ran %d more items in the second after "
          "the job was cancelled (%d before)" % (more, ran))
    records = read_results(a, job_id)
    seqs = [r["seq"] for r in records]
    check(len(seqs) == len(set(seqs)) == job["items"]["out"],
          "the cancelled job's %d records: each seq at most once, as many "
          "as out (%d)" % (len(seqs), job["items"]["out"]))


def main():
    binary = binary_from_argv()
    started = time.monotonic()
    slow_pipeline = """
  - name: slow
    stages:
      - name: nap
        processor: { type: delay, duration: 50ms }
        workers: 8
    aggregate: { type: count }
  - name: small
    stages:
      - name: keep
        processor: { type: filter, field: /n, op: ">=", value: 2 }
        workers: 2
    aggregate: { type: sum, field: /n }
"""
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats) + slow_pipeline
        a = start_replica(stack, binary, config, "A")
        b = start_replica(stack, binary, config, "B")
        unknown_ids_are_404(a, b)
        job_id = post_on_a_read_on_b(a, b)
        listed_everywhere(a, b, job_id)
        work_is_shared(a, b)
        ndjson_on_b_read_on_a(a, b)
        empty_job(a, b)
        small_job_sealed_with_its_outcomes(a, b)
        small_job_waited_on_without_a_consumer(nats, a, b)
        small_job_cancelled_while_waited_on(a, b)
        cancel_on_b(a, b)
    print("cluster api: ok in %.1f s" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
