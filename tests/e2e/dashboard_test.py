#!/usr/bin/python3
"""The dashboard (GET /, DESIGN.md §3.8) in a real headless Chromium
(Debian's chromium + chromium-driver, driven by python3-selenium), against a
real `sluice serve` with a slow pipeline, so a job runs for a few seconds:

- GET / is the page, public, with its CSP (no 'unsafe-inline'), no-cache;
- the page loads with no console error (no SEVERE browser log entry);
- the configured pipeline and its stages are drawn;
- a stage's numbers change while a job runs;
- opening a job shows its results, arriving over its WebSocket stream;
- behind a slow stage, the fast stage before it (its queue full, its workers
  idle) is never marked the bottleneck: only the slow stage is;
- a job's progress bar follows items.completed / items.in, not the result
  records (a split item makes several);
- with auth on, the page asks for the token (a wrong one is refused), then
  shows the data and streams a job (the token in a WebSocket subprotocol).

A screenshot goes to $SLUICE_E2E_ARTIFACTS/dashboard.png (and, with
--update-doc-image, to docs/images/dashboard.png).

    /usr/bin/python3 tests/e2e/dashboard_test.py build/dev/service/sluice
"""
import os
import shutil
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import SluiceServer, binary_from_argv, check  # noqa: E402

TOKEN = "e2e-dashboard-token-Zp3x"
# "enrich" runs 60 items through a 150 ms delay on 2 workers: about 4.5 s.
CONFIG = """
server:
  io_threads: 2
  auth:
    tokens_env: "%s"
pipelines:
  - name: enrich
    stages:
      - name: tag
        processor: { type: set, fields: { /source: e2e } }
      - name: lookup
        processor: { type: delay, duration: 150ms }
        workers: 2
    aggregate: { type: count }
  - name: wordcount
    stages:
      - name: words
        processor: { type: split, field: /text }
    aggregate: { type: group_by, field: "", op: count }
"""
JOB_ITEMS = 60

# A fast first stage with a small queue before a slow one: once "slow" is
# behind, "first"'s queue fills too (8/8) while its workers sit idle,
# blocked downstream; only "slow" may be marked. "fanout" splits each item
# into 5 words that then wait 50 ms each on 2 workers, so its result
# records run 5 times ahead of its items.
FLOW_CONFIG = """
server:
  io_threads: 2
pipelines:
  - name: chain
    stages:
      - name: first
        processor: { type: filter, field: /n, op: ">=", value: 0 }
        workers: 2
        buffer: 8
      - name: slow
        processor: { type: delay, duration: 100ms }
        workers: 2
        buffer: 8
    aggregate: { type: count }
  - name: fanout
    stages:
      - name: words
        processor: { type: split, field: /text }
      - name: wait
        processor: { type: delay, duration: 50ms }
        workers: 2
    aggregate: { type: count }
"""


def start_browser(profile_dir):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-quic", "--no-first-run",
                 "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1360,1000",
                 "--user-data-dir=" + profile_dir):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                            options=options)


def wait_for(driver, script, what, timeout=10):
    """Polls a JS expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.05)
    check(False, "timed out waiting for " + what)


def text_of(driver, selector):
    return driver.execute_script(
        "var e = document.querySelector(arguments[0]);"
        "return e ? e.textContent : null;", selector)


def severe_logs(driver, allow=()):
    """The SEVERE browser console entries, less those containing any of
    `allow` (e.g. the 401 that makes the page ask for a token)."""
    return [e for e in driver.get_log("browser")
            if e["level"] == "SEVERE"
            and not any(a in e["message"] for a in allow)]


def submit(server, items, headers=None, pipeline="enrich", payload=None):
    status, body = server.json("POST", "/v1/jobs?pipeline=" + pipeline,
                               payload or [{"n": i} for i in range(items)],
                               headers=headers)
    check(status == 202, "POST /v1/jobs: %s %s" % (status, body))
    return body["id"]


def open_job(driver, job_id):
    """Clicks the job's row (the table is redrawn every second, so the
    lookup and the click are one script)."""
    wait_for(driver, "document.querySelector('tr[data-job=\"%s\"]')" % job_id,
             "job %s in the jobs table" % job_id)
    driver.execute_script(
        "document.querySelector('tr[data-job=\"%s\"]').click()" % job_id)


def result_rows(driver):
    return driver.execute_script(
        "return document.querySelectorAll('#job-results tbody tr').length")


def check_page_headers(server):
    status, headers, body = server.request("GET", "/")
    check(status == 200, "GET / answered %s" % status)
    check(headers.get("Content-Type") == "text/html; charset=utf-8",
          "Content-Type %r" % headers.get("Content-Type"))
    csp = headers.get("Content-Security-Policy", "")
    check("default-src 'self'" in csp and "'sha256-" in csp
          and "unsafe-inline" not in csp, "CSP %r" % csp)
    check(headers.get("Cache-Control") == "no-cache", "Cache-Control")
    check(b"<script>" in body and b"http://" not in body
          and b"https://" not in body, "the page refers to another origin")


def save_screenshot(driver, name):
    out = os.environ.get("SLUICE_E2E_ARTIFACTS") or tempfile.gettempdir()
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    driver.save_screenshot(path)
    print("screenshot: " + path)
    return path


def test_live_dashboard(driver, binary):
    with SluiceServer(binary, config_text=CONFIG % "") as server:
        check_page_headers(server)
        driver.get(server.url + "/")
        for name in ("enrich", "wordcount"):
            wait_for(driver, "document.querySelector('[data-pipeline=\"%s\"]')"
                     % name, "pipeline %s drawn" % name)
        for stage in ("tag", "lookup", "words"):
            check(text_of(driver, '[data-stage="%s"] .name' % stage)
                  .startswith(stage), "stage %s not drawn" % stage)

        job_id = submit(server, JOB_ITEMS)
        open_job(driver, job_id)
        # The numbers move while the job runs: the slow stage's "in" count
        # read twice, a second and a half apart, by the page's own polling.
        lookup_in = '[data-stage="lookup"] dd.in'
        first = wait_for(driver, "(function(){var e=document.querySelector("
                         "'%s');return e && e.textContent !== '0' && "
                         "e.textContent})()" % lookup_in,
                         "the lookup stage to take items")
        time.sleep(1.5)
        second = text_of(driver, lookup_in)
        check(int(second) > int(first),
              "lookup's in did not change while the job ran: %s then %s"
              % (first, second))
        rate = text_of(driver, '[data-stage="lookup"] dd.rate')
        check(rate not in (None, "—") and float(rate) > 0,
              "lookup's items/s while running: %r" % rate)
        check(wait_for(driver, "document.querySelector("
                       "'[data-stage=\"lookup\"].bottleneck')",
                       "the lookup stage marked the bottleneck", 5),
              "no bottleneck")
        check(result_rows(driver) < JOB_ITEMS, "results came all at once")
        save_screenshot(driver, "dashboard.png")

        # Every result arrives over the stream, then the final state.
        wait_for(driver, "document.querySelectorAll('#job-results tbody tr')"
                 ".length === %d" % JOB_ITEMS, "%d result rows" % JOB_ITEMS)
        wait_for(driver, "document.getElementById('job-state').textContent"
                 " === 'done'", "the job's state to be done")
        check(text_of(driver, "#job-count") == str(JOB_ITEMS), "result count")
        value = text_of(driver, "#job-results tbody tr td.value")
        check('"source":"e2e"' in value, "a result row shows %r" % value)
        wait_for(driver, "document.querySelector('tr[data-job=\"%s\"] "
                 "td.state-done')" % job_id, "the job row to say done")

        status, body = server.json("GET", "/v1/pipelines")
        stage = body["pipelines"][0]["stages"][1]
        check(stage["name"] == "lookup" and stage["p99_seconds"] is not None
              and 0.1 <= stage["p99_seconds"] <= 0.5,
              "lookup's p99_seconds: %r" % stage.get("p99_seconds"))
        errors = severe_logs(driver)
        check(not errors, "console errors: %r" % errors)


def check_bottleneck_downstream(driver, server):
    """The slow stage is marked, not the fast one before it whose queue it
    filled: first seen in one drawing with first's queue full, then in
    every drawing for about 2 s."""
    job_id = submit(server, 300, pipeline="chain")
    marked = ("Array.from(document.querySelectorAll('[data-pipeline=\"chain\"]"
              " .bottleneck'), function (e) { return e.dataset.stage; })")
    wait_for(driver, "(function(){var q=document.querySelector("
             "'[data-pipeline=\"chain\"] [data-stage=\"first\"] dd.queue');"
             "return q && q.textContent === '8 / 8' && %s.join() === 'slow'"
             "})()" % marked,
             "first's queue full (8 / 8) and slow marked the bottleneck", 8)
    seen = set()
    for _ in range(20):
        seen.add(",".join(driver.execute_script("return " + marked)))
        time.sleep(0.1)
    check(seen == {"slow"}, "bottleneck marks while slow is behind: %r"
          % sorted(seen))
    status, _, _ = server.request("DELETE", "/v1/jobs/" + job_id)
    check(status in (200, 202), "DELETE the chain job: %s" % status)


def bar_width(driver, job_id):
    """The job row's progress bar fill, in % (None before it is drawn)."""
    return driver.execute_script(
        "var f = document.querySelector('tr[data-job=\"%s\"] .bar > div');"
        "return f ? parseFloat(f.style.width) : null;" % job_id)


def check_progress_counts_items(driver, server):
    """A job whose items split into 5 records each: its bar follows
    items.completed / items.in, not the records out (5 times ahead)."""
    n = 24  # 120 words waiting 50 ms on 2 workers: about 3 s
    job_id = submit(server, 0, pipeline="fanout",
                    payload=[{"text": "a b c d e"} for _ in range(n)])
    wait_for(driver, "document.querySelector('tr[data-job=\"%s\"]')"
             % job_id, "the fanout job in the jobs table")
    checked = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        # The bar first, then the job: the page read the job earlier, so
        # its completed count can only be behind the one read here.
        width = bar_width(driver, job_id)
        _, job = server.json("GET", "/v1/jobs/" + job_id)
        if job["state"] != "running":
            break
        items = job["items"]
        check("completed" in items, "GET /v1/jobs/ID has no items.completed")
        check(width is None or width <= 100.0 * items["completed"] / n + 0.1,
              "bar at %.1f %% with %r" % (width, items))
        checked += 1
        time.sleep(0.1)
    check(checked >= 10, "the fanout job's bar checked %d times while it ran"
          % checked)
    wait_for(driver, "document.querySelector('tr[data-job=\"%s\"] "
             "td.state-done')" % job_id, "the fanout job row to say done")
    check(bar_width(driver, job_id) == 100.0, "a done job's bar is not full")


def test_flow(driver, binary):
    with SluiceServer(binary, config_text=FLOW_CONFIG) as server:
        driver.get(server.url + "/")
        wait_for(driver, "document.querySelector('[data-pipeline=\"chain\"]')",
                 "pipeline chain drawn")
        check_bottleneck_downstream(driver, server)
        check_progress_counts_items(driver, server)
        errors = severe_logs(driver)
        check(not errors, "console errors: %r" % errors)


def test_auth(driver, binary):
    env = {"SLUICE_E2E_DASH_TOKENS": TOKEN}
    with SluiceServer(binary, config_text=CONFIG % "SLUICE_E2E_DASH_TOKENS",
                      env=env) as server:
        auth = {"Authorization": "Bearer " + TOKEN}
        status, _, _ = server.request("GET", "/")
        check(status == 200, "GET / with auth on answered %s" % status)
        driver.get(server.url + "/")
        form_shown = ("!document.getElementById('auth').classList"
                      ".contains('hidden')")
        wait_for(driver, form_shown, "the token form")
        check(not driver.execute_script(
            "return document.querySelector('[data-pipeline]')"),
            "pipelines drawn without a token")

        def enter(token):
            driver.find_element("id", "token").send_keys(token)
            driver.find_element("css selector",
                                "#auth-form button").click()

        enter("wrong-token")
        wait_for(driver, form_shown + " && document.getElementById("
                 "'auth-note').textContent.indexOf('refused') >= 0",
                 "the wrong token to be refused")
        enter(TOKEN)
        wait_for(driver, "document.querySelector('[data-stage=\"lookup\"]')",
                 "pipelines drawn after the token")
        check(driver.execute_script(
            "return sessionStorage.getItem('sluice.token')") == TOKEN,
            "the token is not kept in the tab")

        job_id = submit(server, 4, headers=auth)
        open_job(driver, job_id)
        wait_for(driver, "document.querySelectorAll('#job-results tbody tr')"
                 ".length === 4", "4 result rows over the authorized stream")
        wait_for(driver, "document.getElementById('job-state').textContent"
                 " === 'done'", "the job's state to be done")
        # The only errors allowed: loading the API without (or with the
        # wrong) token, which is what made the page ask for one.
        errors = severe_logs(driver, allow=("401",))
        check(not errors, "console errors with auth: %r" % errors)


def main():
    binary = binary_from_argv()
    started = time.monotonic()
    profile = tempfile.mkdtemp(prefix="sluice-e2e-chromium-")
    driver = start_browser(profile)
    try:
        test_live_dashboard(driver, binary)
        test_flow(driver, binary)
        test_auth(driver, binary)
        if "--update-doc-image" in sys.argv:
            src = os.path.join(os.environ.get("SLUICE_E2E_ARTIFACTS")
                               or tempfile.gettempdir(), "dashboard.png")
            root = os.path.join(os.path.dirname(__file__), "..", "..")
            shutil.copy(src, os.path.join(root, "docs", "images",
                                          "dashboard.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    elapsed = time.monotonic() - started
    check(elapsed < 60, "the browser test took %.1f s (limit 60)" % elapsed)
    print("dashboard_test: ok (%.1f s)" % elapsed)


if __name__ == "__main__":
    main()
