"""Cluster mode ingestion streams (`GET /v1/stream`, docs/cluster.md,
docs/api.md "WebSocket: ingestion stream") end to end: a real
`nats-server -js` and two replicas A and B of the real binary (ack_wait
2s), driven with the real `sluice submit --follow` client. In order, on one
cluster:

- a whole stream: 1,000 NDJSON items through `sluice submit --follow` on A
  exit 0 with every seq's record once on stdout; the job is done on B with
  in 1000 and exact counts, every seq once in its results there; both
  replicas acked items (`sluice_cluster_acked_total`), so the stream's
  items were shared;
- the accepting replica killed mid-stream: a pipe fed one line every
  100-150 ms into `sluice submit --follow -` on A; once 30 lines were
  written A is killed with -9. On B the job is visible and still open;
  after its lease (10 s) it ends done within 20 s, its `in` equal to the
  number of distinct seqs in its results (0..in-1, each once), at least
  the records the client got before A died and at most the lines written;
- NATS down: once NATS is killed and B's /readyz says so, B refuses the
  ingestion upgrade at once with 503 nats_unavailable (no 101).

    /usr/bin/python3 tests/e2e/cluster_stream_test.py build/dev/service/sluice
"""
import base64
import contextlib
import http.client
import json
import os
import random
import re
import subprocess
import threading
import time

from nats_server import (NatsServer, check_done_exactly, check_every_seq_once,
                         cluster_config, metric_sum, read_results,
                         start_replica, wait_final, wait_until, work_items)
from sluice_server import binary_from_argv, check

N = 1000
SENT_BEFORE_KILL = 30
LEASE_S = 10  # RemoteFeed's lease (service/cluster/ingest.cpp)


def records_of(stdout, what):
    """The JSON records of a `submit --follow` stdout, one per line."""
    try:
        return [json.loads(line) for line in stdout.splitlines() if line]
    except ValueError as e:
        check(False, "%s: stdout is not NDJSON (%s): %r"
              % (what, e, stdout[:300]))


def job_id_of(stderr, what):
    found = re.search(r"^job ([0-9a-f]+)$", stderr, re.M)
    check(found, "%s: no `job ID` line on stderr: %r" % (what, stderr))
    return found.group(1)


def whole_stream(binary, a, b):
    """1,000 items in one go through submit --follow on A, read on B."""
    ndjson = "".join(json.dumps(item) + "\n" for item in work_items(N))
    started = time.monotonic()
    proc = subprocess.run(
        [binary, "submit", "--pipeline", "work", "--follow", "--server",
         a.url, "-"], input=ndjson.encode(), capture_output=True,
        timeout=60)
    took = time.monotonic() - started
    out, err = proc.stdout.decode(), proc.stderr.decode()
    check(proc.returncode == 0, "submit --follow of %d items on A: exit %d,"
          " stderr %r; A's log:\n%s" % (N, proc.returncode, err, a.log()))
    check_every_seq_once(records_of(out, "whole stream"), N,
                         "submit --follow stdout")
    job_id = job_id_of(err, "whole stream")
    job = wait_final(b, job_id, 15, "the streamed job, on B")
    check_done_exactly(job, N, "the streamed job, on B")
    check_every_seq_once(read_results(b, job_id), N,
                         "the streamed job's results, on B")
    acked = {name: metric_sum(server, "sluice_cluster_acked_total")
             for name, server in (("A", a), ("B", b))}
    check(all(v is not None and v > 0 for v in acked.values()),
          "both replicas acked items of the streamed job: %s" % acked)
    print("whole stream: %d items through submit --follow on A in %.2f s, "
          "done on B with exact counts; acked %s" % (N, took, acked))


class SlowSubmit:
    """`sluice submit --follow -` on `server`, fed one line at a time; its
    stdout and stderr are read on threads, so what it printed so far can
    be looked at any time."""

    def __init__(self, binary, server):
        self.proc = subprocess.Popen(
            [binary, "submit", "--pipeline", "work", "--follow", "--server",
             server.url, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.out_lines, self.err_lines = [], []
        self.sent = 0
        self._threads = [
            threading.Thread(target=self._drain, daemon=True,
                             args=(self.proc.stdout, self.out_lines)),
            threading.Thread(target=self._drain, daemon=True,
                             args=(self.proc.stderr, self.err_lines))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _drain(stream, lines):
        for line in stream:
            lines.append(line.decode())

    def send(self, item):
        self.proc.stdin.write((json.dumps(item) + "\n").encode())
        self.proc.stdin.flush()
        self.sent += 1

    def finish(self, timeout=10):
        """Waits for the client to exit (kills it after timeout) and for its
        output to be read; returns (exit code, stdout, stderr)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass  # the client already exited: its end of the pipe is gone
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        return (self.proc.returncode, "".join(self.out_lines),
                "".join(self.err_lines))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def acceptor_killed_mid_stream(binary, a, b):
    """A slow pipe into submit on A; A killed -9 after 30 lines; B ends the
    job with what JetStream stored."""
    client = SlowSubmit(binary, a)
    try:
        check(wait_until(lambda: re.search(
            r"^job ", "".join(client.err_lines), re.M), 10),
              "the slow submit printed no `job ID` within 10 s: %r"
              % "".join(client.err_lines))
        job_id = job_id_of("".join(client.err_lines), "slow stream")
        while client.sent < SENT_BEFORE_KILL:
            client.send({"n": client.sent})
            time.sleep(random.uniform(0.10, 0.15))
            if client.sent == 5:
                # Visible on B while the stream is open on A.
                status, job = b.json("GET", "/v1/jobs/" + job_id)
                check(status == 200 and job["state"] in ("queued",
                                                         "running"),
                      "the open stream's job on B: %s %s" % (status, job))
        a.kill9()
        killed = time.monotonic()
        status, job = b.json("GET", "/v1/jobs/" + job_id)
        check(status == 200 and job["state"] in ("queued", "running"),
              "on B right after A died, the job is visible and open: %s %s"
              % (status, job))
        open_items = job["items"]
        rc, out, err = client.finish(timeout=3)
    finally:
        client.kill()
    got = records_of(out, "slow stream")
    received = len(got)
    check(received > 0, "the client received no record in %d lines over "
          "about %.1f s before A died (the bound below proves nothing); "
          "stderr %r" % (client.sent, client.sent * 0.125, err))
    check(len({r["seq"] for r in got}) == received,
          "the client got a seq twice: %s" % got)

    job = wait_final(b, job_id, 25 - (time.monotonic() - killed),
                     "the stream whose acceptor died, on B")
    ended_after = time.monotonic() - killed
    n_in = job["items"]["in"]
    records = read_results(b, job_id)
    distinct = len({r.get("seq") for r in records})
    check(job["state"] == "done" and distinct == n_in,
          "the job on B: state %s, in %d, %d distinct seqs in %d records; "
          "job %s; B's log:\n%s" % (job["state"], n_in, distinct,
                                    len(records), job, b.log()))
    check_every_seq_once(records, n_in, "the stream whose acceptor died")
    check_done_exactly(job, n_in, "the stream whose acceptor died")
    check(received <= n_in <= client.sent,
          "in %d, want between the %d records the client received and the "
          "%d lines written" % (n_in, received, client.sent))
    check(ended_after <= 20, "the job ended %.1f s after A died, want "
          "within 20 s" % ended_after)
    print("acceptor killed: %d lines written, %d records received by the "
          "client (exit %s); on B right after the kill: %s; done on B %.1f s"
          " after the kill with in %d, each seq once"
          % (client.sent, received, rc, open_items, ended_after, n_in))


def upgrade(server, pipeline="work"):
    """(status, parsed JSON body or None, headers) of an ingestion upgrade
    request on `server`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/v1/stream?pipeline=" + pipeline, headers={
            "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13"})
        resp = conn.getresponse()
        if resp.status == 101:
            return 101, None, dict(resp.getheaders())
        raw = resp.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw[:300]
        return resp.status, body, dict(resp.getheaders())
    finally:
        conn.close()


def refused_while_nats_down(nats, b):
    """Once B knows NATS is gone (/readyz 503), its ingestion upgrade is
    refused at once. An upgrade that races NATS's death instead waits for
    its KV write to time out (10 s) before the same 503: waiting for
    /readyz keeps the test off that window."""
    nats.kill()
    killed = time.monotonic()
    check(wait_until(lambda: b.request("GET", "/readyz")[0] == 503, 10),
          "B's /readyz is not 503 within 10 s of NATS's death; B's log:\n%s"
          % b.log())
    noticed = time.monotonic() - killed
    asked = time.monotonic()
    status, body, headers = upgrade(b)
    took = time.monotonic() - asked
    check(status == 503 and isinstance(body, dict) and
          body.get("error", {}).get("code") == "nats_unavailable",
          "B's ingestion upgrade with NATS down: want 503 nats_unavailable, "
          "got %s %s; B's log:\n%s" % (status, body, b.log()))
    check(took < 3, "the refusal took %.1f s" % took)
    print("NATS down: B's /readyz 503 after %.1f s; the upgrade refused in "
          "%.2f s: %d %s" % (noticed, took, status, json.dumps(body)))


def main():
    binary = binary_from_argv()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        nats = stack.enter_context(NatsServer())
        config = cluster_config(nats, delay="10ms")
        a = start_replica(stack, binary, config, "A")
        b = start_replica(stack, binary, config, "B")
        whole_stream(binary, a, b)
        acceptor_killed_mid_stream(binary, a, b)
        refused_while_nats_down(nats, b)
        # With NATS gone a SIGTERM'd replica takes about 10 s to stop; its
        # shutdown is not what this test is about.
        b.kill9()
    print("PASS (%.1f s)" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
