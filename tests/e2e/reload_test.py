"""Reload (DESIGN.md §3.8, docs/operations.md#reload) end to end: SIGHUP and
POST /v1/admin/reload on a real `sluice serve --config FILE`, with a finite
job and an ingestion stream (the CLI's `sluice submit -`, fed slowly through
a pipe) running across the reload. Checks that the running ones finish on
the old pipelines with nothing lost, that new jobs use the new ones, that an
invalid file is refused with its errors (logged and answered) while the old
config keeps serving, the reload metrics, and 409 without a config file.
"""
import json
import os
import signal
import subprocess
import time

from sluice_server import SluiceServer, binary_from_argv, check

CONFIG_A = """
server:
  max_body_bytes: 1MiB
pipelines:
  - name: slow
    stages:
      - name: wait
        processor: { type: delay, duration: 20ms }
        workers: 4
    aggregate: { type: count }
"""

# slow gets a stage that marks its results; a pipeline is added.
CONFIG_B = """
server:
  max_body_bytes: 1MiB
pipelines:
  - name: slow
    stages:
      - name: mark
        processor: { type: set, fields: { /v: 2 } }
        workers: 2
    aggregate: { type: count }
  - name: added
    stages:
      - name: pass
        processor: { type: filter, field: /n, op: ">=", value: 0 }
    aggregate: { type: count }
"""


def stage_names(server):
    status, body = server.json("GET", "/v1/pipelines")
    check(status == 200, "GET /v1/pipelines: %s" % status)
    return {p["name"]: [s["name"] for s in p["stages"]]
            for p in body["pipelines"]}


def wait_for(predicate, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    check(False, "timed out waiting for " + what)


def metric(server, name):
    _, _, text = server.request("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and \
                line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return None


def start_stream(binary, server):
    """`sluice submit --follow -` on the slow pipeline, fed by the test."""
    return subprocess.Popen(
        [binary, "submit", "--server", server.url, "--pipeline", "slow",
         "--follow", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def feed(proc, first, count):
    for n in range(first, first + count):
        proc.stdin.write(json.dumps({"n": n}) + "\n")
    proc.stdin.flush()


def reload_across_running_work(binary, server):
    stream = start_stream(binary, server)
    feed(stream, 0, 50)
    # The stream binds to the pipelines of the moment it opens: it must be
    # open before the reload (the CLI starting late under load opened it
    # after the reload once, and ran on the new pipeline).
    wait_for(lambda: any(j["pipeline"] == "slow" for j in
                         server.json("GET", "/v1/jobs")[1]["jobs"]),
             "the stream to open")
    status, job = server.json("POST", "/v1/jobs?pipeline=slow",
                              [{"n": n} for n in range(400)])
    check(status == 202, "POST job: %s %s" % (status, job))
    wait_for(lambda: server.json("GET", "/v1/jobs/" + job["id"])[1]
             ["items"]["out"] > 0, "the job to start")

    server.write_config(CONFIG_B)
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: stage_names(server) == {"slow": ["mark"],
                                             "added": ["pass"]},
             "SIGHUP to swap in the new pipelines")
    _, running = server.json("GET", "/v1/jobs/" + job["id"])
    check(running["state"] == "running",
          "the job spans the reload (400 items of 20 ms on 4 workers take "
          "2 s): %s" % running)

    feed(stream, 50, 50)  # the stream is still open on the old pipeline
    out, err = stream.communicate(timeout=60)
    check(stream.returncode == 0, "submit exit %s: %s" % (stream.returncode,
                                                          err))
    records = [json.loads(line) for line in out.splitlines() if line]
    seqs = sorted(r["seq"] for r in records)
    check(seqs == list(range(100)),
          "the stream's 100 items each came back once: %s" % seqs[:10])
    check(all("v" not in r["value"] for r in records),
          "the stream ran on the old pipeline (no /v)")

    old = server.wait_job(job["id"])
    check(old["state"] == "done" and old["items"]["out"] == 400 and
          old["aggregate"] == 400, "the running job finished whole: %s" % old)
    status, new = server.json("POST", "/v1/jobs?pipeline=slow&wait=10",
                              [{"n": 1}])
    check(status == 200 and new["state"] == "done", "new job: %s" % new)
    _, page = server.json("GET", "/v1/jobs/%s/results" % new["id"])
    check(page["results"][0]["value"] == {"n": 1, "v": 2},
          "a new job runs on the new pipeline: %s" % page)


def invalid_file_is_refused(server):
    before = stage_names(server)
    server.write_config(CONFIG_B.replace("workers: 2", "workers: 0"))
    status, body = server.json("POST", "/v1/admin/reload")
    check(status == 422, "invalid reload: %s %s" % (status, body))
    error = body["error"]
    check(error["code"] == "invalid_config", "code: %s" % error)
    check(any(e["path"] == "pipelines[0].stages[0].workers"
              for e in error["errors"]), "names the key: %s" % error)
    check(stage_names(server) == before, "the old config keeps serving")
    status, job = server.json("POST", "/v1/jobs?pipeline=added&wait=10",
                              [{"n": 3}])
    check(status == 200 and job["items"]["out"] == 1, "still serving: %s"
          % job)
    wait_for(lambda: "pipelines[0].stages[0].workers" in server.log(),
             "the errors in the log")

    server.write_config(CONFIG_B)
    status, body = server.json("POST", "/v1/admin/reload")
    check(status == 200 and body["result"] == "success" and
          body["pipelines"] == ["slow", "added"] and
          body["restart_required"] == [],
          "valid reload: %s %s" % (status, body))
    check(metric(server, 'sluice_config_reloads_total{result="success"}')
          == 2, "two successful reloads counted")
    check(metric(server, 'sluice_config_reloads_total{result="failure"}')
          == 1, "one failed reload counted")
    stamp = metric(server,
                   "sluice_config_last_reload_success_timestamp_seconds")
    check(stamp is not None and abs(stamp - time.time()) < 60,
          "last success timestamp: %s" % stamp)


def restart_keys_are_reported(server):
    server.write_config(CONFIG_B.replace("1MiB", "2MiB"))
    status, body = server.json("POST", "/v1/admin/reload")
    check(status == 200 and body["restart_required"] ==
          ["server.max_body_bytes"], "restart_required: %s" % body)


def main():
    binary = binary_from_argv()
    with SluiceServer(binary, config_text=CONFIG_A) as server:
        reload_across_running_work(binary, server)
        invalid_file_is_refused(server)
        restart_keys_are_reported(server)
    with SluiceServer(binary) as server:  # the built-in config
        status, body = server.json("POST", "/v1/admin/reload")
        check(status == 409 and
              body["error"]["code"] == "reload_unavailable",
              "no file to reload: %s %s" % (status, body))
        check(metric(server,
                     'sluice_config_reloads_total{result="failure"}') == 0,
              "a reload with no file to read is not a failed reload")
    print("reload_test: ok")


if __name__ == "__main__":
    main()
