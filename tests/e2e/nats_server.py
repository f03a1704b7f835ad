"""A real NATS JetStream server for the cluster end-to-end tests: Debian's
`nats-server -js` on 127.0.0.1, an ephemeral port and a temporary store.

    with NatsServer() as nats:
        config = CONFIG % nats.url
        ...
        nats.kill()      # SIGKILL: what a crash of the NATS host looks like
        nats.restart()   # the same port and store dir, so replicas reconnect

The port is picked by the server (`-p -1`) and read from the ports file it
writes (`--ports_file_dir`, `nats-server_<pid>.ports`). A restart passes that
port explicitly, since `-p -1` would pick another. The child is started with
PR_SET_PDEATHSIG = SIGKILL and stopped when the `with` block ends, so no test
leaves a server behind, even when the test itself is killed. Not
thread-safe: one test drives one instance.

Below NatsServer: what every cluster test shares (the replicas' config,
starting a replica until it is ready, reading a job's whole result log,
the exact-counts and every-seq-once checks).
"""
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter

from sluice_server import SluiceServer, check

_PR_SET_PDEATHSIG = 1


def nats_server_binary():
    """The nats-server to run: $SLUICE_NATS_SERVER (tests/e2e/CMakeLists.txt
    passes what find_program found), else `nats-server` on PATH or in
    /usr/sbin, where Debian puts it. Raises RuntimeError if there is none."""
    candidates = [os.environ.get("SLUICE_NATS_SERVER"),
                  shutil.which("nats-server"), "/usr/sbin/nats-server"]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("nats-server not found (scripts/bootstrap installs "
                       "it; or set SLUICE_NATS_SERVER)")


def _die_with_parent():
    """Runs in the child before exec: SIGKILL it when the test process dies,
    whatever the way (a ctest timeout, a failed check that skips cleanup)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class NatsServer:
    """A `nats-server -js` child process on 127.0.0.1. start_timeout bounds
    each start (and restart) until the server accepts connections."""

    def __init__(self, binary=None, start_timeout=15):
        self.binary = binary or nats_server_binary()
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self._dir = tempfile.TemporaryDirectory(prefix="sluice-nats-")
        self.store_dir = os.path.join(self._dir.name, "store")
        self._log_path = os.path.join(self._dir.name, "nats.log")
        self._log = None

    # --- lifecycle -------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        self._dir.cleanup()
        return False

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, port=None):
        """Starts the server on `port`, or on one it picks when None. Raises
        RuntimeError (with the server's log) if it is not accepting
        connections within start_timeout."""
        if self.running():
            raise RuntimeError("nats-server is already running")
        args = [self.binary, "-js", "-a", "127.0.0.1",
                "-p", str(port if port is not None else -1), "-m", "-1",
                "-sd", self.store_dir, "--ports_file_dir", self._dir.name]
        self._log = open(self._log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            found = self._port_from_ports_file()
            if found is not None and self._accepts(found):
                self.port = found
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("nats-server did not start (args %s); log:\n%s"
                           % (args, self.log()))

    def kill(self):
        """SIGKILL and wait: the server gets no chance to flush or say
        goodbye. Safe when it is not running."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def stop(self):
        """SIGTERM (a clean shutdown), SIGKILL after 10 s. Safe when it is
        not running."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def restart(self, kill=True):
        """Stops the server if it runs (SIGKILL, or SIGTERM with
        kill=False), then starts it on the same port with the same store,
        so clients that kept the URL reconnect and JetStream finds its
        streams on disk."""
        if self.port is None:
            raise RuntimeError("restart() before the first start()")
        if kill:
            self.kill()
        else:
            self.stop()
        self.start(port=self.port)

    def log(self):
        """Everything the server logged so far (across restarts)."""
        try:
            with open(self._log_path, encoding="utf-8",
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stream_state(self, stream):
        """{"messages": N, "consumers": N} of JetStream stream `stream`
        (e.g. "t1_results"), from the server's monitoring endpoint
        (/jsz), or None when the stream does not exist."""
        url = self._ports()["monitoring"][0] + "/jsz?streams=true"
        with urllib.request.urlopen(url, timeout=5) as answer:
            jsz = json.load(answer)
        for account in jsz.get("account_details", []):
            for info in account.get("stream_detail", []):
                if info["name"] == stream:
                    return {"messages": info["state"]["messages"],
                            "consumers": info["state"]["consumer_count"]}
        return None

    # --- helpers ---------------------------------------------------------
    def _ports(self):
        path = os.path.join(self._dir.name,
                            "nats-server_%d.ports" % self.proc.pid)
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def _port_from_ports_file(self):
        try:
            urls = self._ports()["nats"]
        except (OSError, ValueError, KeyError):
            return None  # not written yet, or half written
        return int(urls[0].rsplit(":", 1)[1])

    @staticmethod
    def _accepts(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None


# --- what the cluster tests share ---------------------------------------
# Replicas of one cluster: `sluice serve` children with the same config,
# pointing at one NatsServer, and the checks every cluster test makes.

# %(url)s is the NATS url; %(delay)s the work pipeline's per-item delay.
# ack_wait 2s: an item held by a replica that died comes back that soon.
CLUSTER_CONFIG = """
cluster:
  nats: { url: "%(url)s", prefix: t1, ack_wait: 2s }
pipelines:
  - name: work
    stages:
      - name: mark
        processor: { type: set, fields: { /done: true } }
        workers: 4
      - name: wait
        processor: { type: delay, duration: %(delay)s }
        workers: 8
    aggregate: { type: count }
"""


def cluster_config(nats, delay="5ms"):
    """CLUSTER_CONFIG for `nats` (a NatsServer)."""
    return CLUSTER_CONFIG % {"url": nats.url, "delay": delay}


def start_replica(stack, binary, config_text, name, ready_timeout=20):
    """A `sluice serve` replica entered on `stack` (a contextlib.ExitStack),
    once its /readyz answers 200 (connected to NATS, job records loaded).
    Fails the test with the replica's log if it does not get there."""
    try:
        server = stack.enter_context(SluiceServer(binary, config_text))
    except RuntimeError as e:
        check(False, "replica %s did not start: %s" % (name, e))
    ok = wait_until(lambda: server.request("GET", "/readyz")[0] == 200,
                    ready_timeout)
    check(ok, "replica %s: /readyz is not 200 after %ss; log:\n%s"
          % (name, ready_timeout, server.log()))
    return server


def wait_until(predicate, timeout, interval=0.05):
    """True once predicate() is true, False after timeout seconds. A
    predicate that raises OSError (a replica not answering) or fails to
    find a key in an answer (a 404 or 503 body) counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except (OSError, LookupError, TypeError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def metric_sum(server, name):
    """The sum of every sample of the series `name` (over its labels) on
    /metrics, or None when the series is absent."""
    _, _, text = server.request("GET", "/metrics", timeout=10)
    total = None
    for line in text.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


def wait_final(server, job_id, timeout, what):
    """The job's status once its state is final (done, failed, cancelled),
    read from `server`; fails the test with the last answer if it is not
    final within timeout seconds. 503s and refused connections are
    retried, since a replica may be waiting for NATS."""
    last = [None]

    def final():
        status, body = server.json("GET", "/v1/jobs/" + job_id, timeout=10)
        last[0] = (status, body)
        return status == 200 and body["state"] in ("done", "failed",
                                                   "cancelled")
    check(wait_until(final, timeout, interval=0.1),
          "%s: job %s not final after %ss; last answer %s"
          % (what, job_id, timeout, last[0]))
    return last[0][1]


def read_results(server, job_id, page=500):
    """Every record of the job's result log, read from `server` as NDJSON
    pages of `page` records, following X-Next-Offset to X-Total-Count."""
    records, offset, total = [], 0, None
    while total is None or offset < total:
        status, headers, raw = server.request(
            "GET", "/v1/jobs/%s/results?offset=%d&limit=%d"
            % (job_id, offset, page),
            headers={"Accept": "application/x-ndjson"})
        check(status == 200, "results page at %d: %s %s"
              % (offset, status, raw[:200]))
        lines = [line for line in raw.decode().splitlines() if line]
        records += [json.loads(line) for line in lines]
        total = int(headers["X-Total-Count"])
        following = int(headers["X-Next-Offset"])
        check(following == offset + len(lines),
              "X-Next-Offset %d after %d records from %d"
              % (following, len(lines), offset))
        if not lines:
            break
        offset = following
    return records


def check_every_seq_once(records, n, what):
    """The work pipeline's records: seqs 0..n-1 exactly once, each the
    result of its own item ({"n": seq, "done": true})."""
    seqs = sorted(r.get("seq", -1) for r in records)
    if seqs != list(range(n)):
        twice = sorted(s for s, c in Counter(seqs).items() if c > 1)
        missing = sorted(set(range(n)) - set(seqs))
        check(False, "%s: %d records for %d items; twice: %s; missing: %s"
              % (what, len(seqs), n, twice[:10], missing[:10]))
    wrong = [r for r in records
             if r.get("value") != {"n": r["seq"], "done": True}]
    check(not wrong, "%s: %d records are not their item's result: %s"
          % (what, len(wrong), wrong[:3]))


def check_done_exactly(job, n, what):
    """A work-pipeline job of n items that ended done: exact counts, and
    the count aggregate equal to n."""
    want = {"in": n, "out": n, "filtered": 0, "errors": 0, "cancelled": 0,
            "completed": n}
    check(job["state"] == "done", "%s: state %s: %s"
          % (what, job["state"], job))
    got = {k: job["items"].get(k) for k in want}
    check(got == want, "%s: counts %s, want %s" % (what, got, want))
    check(job["aggregate"] == n, "%s: aggregate %s, want %d"
          % (what, job["aggregate"], n))


def work_items(n):
    return [{"n": k} for k in range(n)]
