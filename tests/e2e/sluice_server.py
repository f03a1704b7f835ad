"""Shared builders for the end-to-end suite (tests/e2e): a real `sluice serve`
child process on 127.0.0.1:0, and small HTTP helpers over the standard
library only.

    with SluiceServer(binary, config_text=YAML) as server:
        status, body = server.request("GET", "/healthz")

The server is started with `--listen 127.0.0.1:0`; its bound port is read
from the "listening on HOST:PORT" line it prints. Leaving the `with` block
sends SIGTERM and waits (then SIGKILL after 20 s), so no test leaves a
server behind. Not thread-safe: one test drives one instance.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def binary_from_argv():
    """The sluice binary: argv[1], as tests/e2e/CMakeLists.txt passes it."""
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        sys.exit("usage: %s /path/to/sluice [args...]" % sys.argv[0])
    return os.path.abspath(sys.argv[1])


class SluiceServer:
    """A `sluice serve` child process. config_text (YAML) is written to a
    temporary file passed as --config; None serves the built-in default.
    env adds to the child's environment (e.g. the auth token variable)."""

    def __init__(self, binary, config_text=None, env=None, start_timeout=30):
        self.binary = binary
        self.config_text = config_text
        self.env = dict(os.environ, **(env or {}))
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.config_path = None
        self._dir = None
        self._log_lines = []

    # --- lifecycle -------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        args = [self.binary, "serve", "--listen", "127.0.0.1:0"]
        if self.config_text is not None:
            self._dir = tempfile.TemporaryDirectory(prefix="sluice-e2e-")
            self.config_path = os.path.join(self._dir.name, "config.yaml")
            self.write_config(self.config_text)
            args += ["--config", self.config_path]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, text=True)
        # stderr is the log: drained on a thread so the child never blocks.
        threading.Thread(target=self._drain, args=(self.proc.stderr,),
                         daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        prefix = "listening on "
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                self.port = int(line.strip().rsplit(":", 1)[1])
                threading.Thread(target=self._drain, args=(self.proc.stdout,),
                                 daemon=True).start()
                return
        self.stop()
        raise RuntimeError("sluice did not print 'listening on'; log:\n"
                           + "".join(self._log_lines))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._dir:
            self._dir.cleanup()
            self._dir = None

    def kill9(self):
        """SIGKILL and wait: a crash, with no drain and no goodbye. The
        config file stays until stop() (which is then a no-op for the
        process)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _drain(self, stream):
        for line in stream:
            self._log_lines.append(line)

    def log(self):
        """Everything the server wrote to stderr (and stdout after the
        listening line) so far."""
        return "".join(self._log_lines)

    def write_config(self, text):
        """Replaces the config file (for reload tests)."""
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(text)

    # --- HTTP ------------------------------------------------------------
    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers, body bytes). A dict/list body is sent as JSON.
        Never raises on an HTTP error status."""
        data = body
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method, path, body=None, headers=None, timeout=30):
        """(status, parsed JSON body or None)."""
        status, _, raw = self.request(method, path, body, headers, timeout)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def wait_job(self, job_id, timeout=60, headers=None):
        """Polls GET /v1/jobs/ID until its state is final; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.json("GET", "/v1/jobs/" + job_id,
                                    headers=headers)
            if status == 200 and job["state"] in ("done", "failed",
                                                  "cancelled"):
                return job
            time.sleep(0.05)
        raise AssertionError("job %s did not finish in %ss" % (job_id,
                                                               timeout))


def check(condition, message):
    """Fails the test with `message` (exit status 1) unless condition."""
    if not condition:
        print("FAIL: " + message, file=sys.stderr, flush=True)
        sys.exit(1)
