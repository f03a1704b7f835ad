"""End-to-end test of the CLI client (docs/cli.md): `sluice submit`, `jobs`,
`status`, `results`, `cancel` and `top` against a real server, and submit's
progress bar under a pseudo-terminal (and its absence on a pipe).

    /usr/bin/python3 tests/e2e/cli_client_test.py build/dev/service/sluice

The server's max_body_bytes is 64 KiB, so the ~400 KiB inputs below could
not be POSTed: they go through only because submit streams them.
"""
import json
import os
import pty
import re
import select
import socket
import subprocess
import tempfile
import time

from sluice_server import SluiceServer, binary_from_argv, check

CONFIG = """
server:
  max_body_bytes: 64KiB
jobs:
  max_pending_items: 2000
pipelines:
  - name: tag
    stages:
      - name: mark
        processor: { type: set, fields: { /seen: true } }
        workers: 2
    aggregate: { type: count }
  - name: slow
    stages:
      - name: nap
        processor: { type: delay, duration: 20ms }
        workers: 2
    aggregate: { type: count }
"""

N = 3000
PAD = "x" * 120


def items(n=N):
    return [{"i": k, "pad": PAD} for k in range(n)]


def run(binary, *args, stdin=None, env=None, timeout=60):
    """(exit code, stdout, stderr) of `sluice args...`."""
    proc = subprocess.run([binary] + list(args), input=stdin,
                          capture_output=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def check_records(stdout, n, what):
    """Every seq 0..n-1 exactly once, each value carrying its item."""
    records = [json.loads(line) for line in stdout.splitlines() if line]
    seqs = sorted(r["seq"] for r in records)
    check(seqs == list(range(n)),
          "%s: %d records, want seqs 0..%d once each" % (what, len(seqs), n - 1))
    check(all(r["value"]["i"] == r["seq"] and r["value"]["seen"] is True
              for r in records), what + ": a record is not its item's result")
    check(all(set(r) == {"seq", "value"} for r in records),
          what + ": records are not shaped as GET /v1/jobs/ID/results's")


def test_submit(binary, server, tmp):
    url = ["--server", server.url]
    array_path = os.path.join(tmp, "items.json")
    with open(array_path, "w") as f:
        json.dump(items(), f, indent=1)  # whitespace and newlines inside
    check(os.path.getsize(array_path) > 64 * 1024, "the input is not large")
    rc, out, err = run(binary, "submit", "--pipeline", "tag", "--follow",
                       *url, array_path)
    check(rc == 0, "submit --follow of an array: exit %d, %s" % (rc, err))
    check_records(out, N, "array --follow")
    check(re.search(r"^job [0-9a-f]+$", err, re.M), "no `job ID` line: " + err)
    check("\r" not in err and "items" not in err,
          "a progress bar on a pipe: " + repr(err))

    ndjson = "".join(json.dumps(item) + "\n" for item in items())
    rc, out, err = run(binary, "submit", "--pipeline=tag", "--follow", *url,
                       "-", stdin=ndjson.encode())
    check(rc == 0, "submit --follow of NDJSON on stdin: exit %d, %s" % (rc, err))
    check_records(out, N, "NDJSON stdin --follow")

    # Without --follow: the final status object only.
    rc, out, err = run(binary, "submit", "--pipeline", "tag", *url, array_path)
    job = json.loads(out)
    check(rc == 0 and job["state"] == "done" and job["items"]["in"] == N
          and job["aggregate"] == N, "submit without --follow: %r" % out[:300])
    return job["id"]


def test_streaming_stdin(binary, server):
    """An item written on a pipe that then stays quiet goes at once (a
    partial frame), and its record comes back while the input is still
    open: `tail -f log | sluice submit --follow -` streams."""
    proc = subprocess.Popen(
        [binary, "submit", "--pipeline", "tag", "--follow", "--server",
         server.url, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b'{"i": 0}\n')
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 5)
        check(ready, "no record within 5 s of the first line, the input open")
        first = json.loads(proc.stdout.readline())
        check(first == {"seq": 0, "value": {"i": 0, "seen": True}},
              "first record: %r" % first)
        proc.stdin.write(b'{"i": 1}\n')
        proc.stdin.close()
        proc.wait(timeout=30)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    check(proc.returncode == 0, "streaming submit: exit %d %r" % (
        proc.returncode, err))
    check(json.loads(out) == {"seq": 1, "value": {"i": 1, "seen": True}},
          "second record: %r" % out)


def test_failures(binary, server, tmp):
    url = ["--server", server.url]
    rc, out, err = run(binary, "submit", "--pipeline", "nope", *url, "-",
                       stdin=b"[1]")
    check(rc == 1 and 'unknown pipeline "nope"' in err,
          "unknown pipeline: exit %d, %r" % (rc, err))

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err = run(binary, "jobs", "--server", "http://127.0.0.1:%d" % port)
    check(rc == 1 and "127.0.0.1:%d" % port in err and "refused" in err,
          "connection refused: exit %d, %r" % (rc, err))
    rc, out, err = run(binary, "submit", "--pipeline", "tag", "--server",
                       "127.0.0.1:%d" % port, "-", stdin=b"[1]")
    check(rc == 1 and "127.0.0.1:%d" % port in err, "submit refused: %r" % err)

    rc, out, err = run(binary, "submit", *url, "-", stdin=b"[1]")
    check(rc == 2 and "--pipeline" in err, "no --pipeline: exit %d" % rc)
    rc, out, err = run(binary, "status", *url)
    check(rc == 2, "status without ID: exit %d" % rc)
    rc, out, err = run(binary, "status", "0123456789abcdef", *url)
    check(rc == 1 and "unknown_job" in err, "unknown job: %d %r" % (rc, err))
    rc, out, err = run(binary, "submit", "--pipeline", "tag", "--server",
                       "https://127.0.0.1:1", "-", stdin=b"[1]")
    check(rc == 2 and "not supported by the CLI yet" in err, "https: %r" % err)

    # Malformed input: the offset is said, the exit is 1.
    rc, out, err = run(binary, "submit", "--pipeline", "tag", *url, "-",
                       stdin=b'[{"i": 0},\n {"i": 1,}]')
    check(rc == 1 and "byte offset 20" in err, "malformed: %d %r" % (rc, err))
    rc, out, err = run(binary, "submit", "--pipeline", "tag", *url, "-",
                       stdin=b'{"i": 0}\n{"i": 1,}\n')
    check(rc == 1 and "malformed NDJSON at line 2, byte offset 17" in err,
          "malformed NDJSON: %d %r" % (rc, err))


def test_too_big(binary, server):
    """A frame over max_body_bytes (64 KiB here): the 1009 close and its
    hint, not the write's broken pipe, whichever side sees the end first."""
    small = "".join(json.dumps({"i": k}) + "\n" for k in range(50))  # 490 B
    rest = "".join(json.dumps({"i": k}) + "\n" for k in range(3000))
    big = json.dumps({"big": "x" * 100000}) + "\n"
    for attempt in range(3):
        rc, out, err = run(binary, "submit", "--pipeline", "tag", "--server",
                           server.url, "-", stdin=(small + big + rest).encode())
        # Beast may give the writer's broken pipe first and abort the read
        # of the close frame: then the message says 1009 is probable.
        check(rc == 1 and "1009 message too big)" in err
              and "the item at byte offset 490 " in err
              and "larger than the server's limit" in err,
              "one item over the limit: exit %d %r" % (rc, err))
        rc, out, err = run(binary, "submit", "--pipeline", "tag",
                           "--batch-bytes", "200000", "--batch-items",
                           "100000", "--server", server.url,
                           "-", stdin=(rest * 10).encode())
        check(rc == 1 and "1009" in err and "lower --batch-bytes" in err,
              "frames over the limit: exit %d %r" % (rc, err))


def test_job_commands(binary, server, job_id):
    url = ["--server", server.url]
    rc, out, err = run(binary, "jobs", *url)
    check(rc == 0 and job_id in out and "PIPELINE" in out, "jobs: " + out[:300])
    rc, out, err = run(binary, "status", job_id, *url)
    check(rc == 0 and json.loads(out)["id"] == job_id, "status: " + out[:200])
    # 3000 records at 700 a page: five pages.
    rc, out, err = run(binary, "results", job_id, "--page-size", "700", *url)
    check(rc == 0, "results: exit %d %s" % (rc, err))
    check_records(out, N, "results")

    status, job = server.json("POST", "/v1/jobs?pipeline=slow",
                              [{"k": k} for k in range(1000)])
    check(status == 202, "slow job: %d" % status)
    # While it runs, top shows the nap stage busy, with a rate.
    rc, out, err = run(binary, "top", "--once", "--interval", "0.5", *url)
    row = next((line.split() for line in out.splitlines()
                if line.split()[:1] == ["nap"]), None)
    check(rc == 0 and row is not None, "top: no nap row:\n" + out)
    check(float(row[2]) > 0 and row[4] == "2/2",
          "top: the running stage has no rate or idle workers: %r" % row)
    rc, out, err = run(binary, "cancel", job["id"], *url)
    check(rc == 0 and json.loads(out)["id"] == job["id"], "cancel: " + err)
    check(server.wait_job(job["id"])["state"] == "cancelled", "not cancelled")


def test_page_size(binary, server, job_id):
    """--page-size is checked before any request: 0 would print nothing and
    exit 0, 20000 would say the server's `limit` instead of the option."""
    for bad in ("0", "20000", "-5", "abc", ""):
        rc, out, err = run(binary, "results", job_id, "--page-size=" + bad,
                           "--server", server.url)
        check(rc == 2 and "--page-size" in err and "1 to 10000" in err
              and out == "", "--page-size=%r: exit %d %r" % (bad, rc, err))
    rc, out, err = run(binary, "results", job_id, "--page-size", "10000",
                       "--server", server.url)
    check(rc == 0 and len(out.splitlines()) == N, "--page-size 10000: %s" % err)


def test_timeout(binary):
    """A listener that accepts and never answers: every request command
    gives up after --timeout, naming the address, with exit 1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        where = "127.0.0.1:%d" % listener.getsockname()[1]
        cases = [("jobs",), ("status", "0123456789abcdef"),
                 ("results", "0123456789abcdef"),
                 ("cancel", "0123456789abcdef"), ("top", "--once")]
        for args in cases:
            started = time.monotonic()
            rc, out, err = run(binary, *args, "--timeout", "700ms",
                               "--server", where, timeout=20)
            took = time.monotonic() - started
            check(rc == 1 and where in err and "timed out after 700ms" in err,
                  "%s against a silent server: exit %d %r" % (args, rc, err))
            check(took < 5, "%s: gave up after %.1f s" % (args, took))
        rc, out, err = run(binary, "jobs", "--timeout", "soon", "--server",
                           where)
        check(rc == 2 and "--timeout" in err, "bad --timeout: %d %r" % (rc, err))


def test_top(binary, server):
    rc, out, err = run(binary, "top", "--once", "--interval", "0.2",
                       "--server", server.url)
    check(rc == 0, "top --once: exit %d %s" % (rc, err))
    for name in ("tag", "mark", "slow", "nap", "ITEMS/S", "BUSY/WORKERS"):
        check(name in out, "top --once lacks %s:\n%s" % (name, out))
    check("\x1b[" not in out, "ANSI codes on a pipe")


def read_pty(master, proc, seconds):
    """What the child wrote on the terminal `master` within `seconds` or
    until it exited."""
    text = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        text += chunk
    return text.decode(errors="replace")


def test_top_terminal(binary, server):
    """stdout on a pseudo-terminal: the view is redrawn in place."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([binary, "top", "--interval", "0.2", "--server",
                             server.url], stdout=slave,
                            stderr=subprocess.PIPE)
    os.close(slave)
    text = read_pty(master, proc, 1.5)
    proc.terminate()
    proc.wait(timeout=10)
    os.close(master)
    check(text.count("\x1b[H") >= 2 and "\x1b[K" in text,
          "top on a terminal does not redraw in place: %r" % text[:300])
    check("mark" in text and "nap" in text, "top on a terminal: no stages")


BAR = re.compile(r"\[([#-]+)\] (\d+)/(\d+) items +(\d+)/s +(ETA [-\d:]+|reading)?")


def test_progress_bar(binary, server):
    """stderr on a pseudo-terminal: the bar shows the job's completed items
    (its status, polled) over the items sent, `reading` while the input is
    open, then an ETA, and ends at 300/300. The pipeline is slow (300 x 20
    ms / 2 workers, ~3 s), so the client has sent everything long before
    the job is done: a bar from what was read or sent would be full early."""
    master, slave = pty.openpty()
    lines = [json.dumps({"k": k}) + "\n" for k in range(300)]
    proc = subprocess.Popen(
        [binary, "submit", "--pipeline", "slow", "--follow", "--server",
         server.url, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=slave)
    os.close(slave)
    proc.stdin.write("".join(lines[:20]).encode())
    proc.stdin.flush()
    text = read_pty(master, proc, 1.5)  # the input still open
    proc.stdin.write("".join(lines[20:]).encode())
    proc.stdin.close()
    text += read_pty(master, proc, 30)
    os.close(master)
    out = proc.stdout.read()
    check(proc.wait(timeout=30) == 0, "submit under a pty failed")
    check(len(out.splitlines()) == 300, "records missing under a pty")
    bars = BAR.findall(text)
    check(bars, "no bar on the terminal: %r" % text[:300])
    check(any(b[4] == "reading" for b in bars),
          "no `reading` while the input was open: %r" % bars[:5])
    final = bars[-1]
    check(final[1:3] == ("300", "300") and set(final[0]) == {"#"},
          "the bar does not end full at 300/300: %r" % (final,))
    middle = [b for b in bars if b[2] == "300" and 0 < int(b[1]) < 300]
    check(middle, "no bar while the job ran: %r" % bars)
    for fill, done, sent, rate, eta in middle:
        check(fill.count("#") == int(int(done) / int(sent) * 24),
              "the bar's length is not completed/sent: %r" % ((fill, done),))
    check(any(b[4].startswith("ETA") and int(b[3]) > 0 for b in middle),
          "no ETA with a rate once the input was read: %r" % middle)


def test_auth(binary, tmp):
    env = {"E2E_CLI_TOKENS": "s3cret"}
    config = CONFIG.replace("server:\n", "server:\n  auth: { tokens_env: E2E_CLI_TOKENS }\n")
    with SluiceServer(binary, config_text=config, env=env) as server:
        rc, out, err = run(binary, "submit", "--pipeline", "tag", "--server",
                           server.url, "-", stdin=b"[1]")
        check(rc == 1 and "unauthorized" in err, "no token: %d %r" % (rc, err))
        rc, out, err = run(binary, "submit", "--pipeline", "tag", "--server",
                           server.url, "-", stdin=b"[{}]",
                           env={"SLUICE_TOKEN": "s3cret"})
        check(rc == 0, "SLUICE_TOKEN: exit %d %s" % (rc, err))
        rc, out, err = run(binary, "jobs", "--token", "s3cret",
                           env={"SLUICE_SERVER": server.url})
        check(rc == 0 and "tag" in out, "--token + SLUICE_SERVER: %s" % err)


def main():
    binary = binary_from_argv()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sluice-cli-") as tmp:
        with SluiceServer(binary, config_text=CONFIG) as server:
            job_id = test_submit(binary, server, tmp)
            test_streaming_stdin(binary, server)
            test_failures(binary, server, tmp)
            test_too_big(binary, server)
            test_job_commands(binary, server, job_id)
            test_page_size(binary, server, job_id)
            test_top(binary, server)
            test_top_terminal(binary, server)
            test_progress_bar(binary, server)
        test_auth(binary, tmp)
    test_timeout(binary)
    print("cli client: ok in %.1f s" % (time.monotonic() - started))


if __name__ == "__main__":
    main()
