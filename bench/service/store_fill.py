# bench/service/store_fill.py [seconds]: the "big jobs while the result store
# fills" measurement of bench/RESULTS.md (issue 12 §3). Needs a release build
# and build/bench/service-config.yaml (run `scripts/bench service` once).
# Big-job throughput while the result store fills: 10,000-item NDJSON jobs
# through bulk (filter -> set -> sha256, count), 2 in flight, for N seconds,
# against a server whose results budget is 512 MiB and whose retention is long.
import json, os, subprocess, sys, time, threading, urllib.request
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
cfg = open(f"{ROOT}/build/bench/service-config.yaml").read()
cfg = cfg.replace("retention: 2m", "retention: 1h").replace("max_retained_bytes: 2GiB", "max_retained_bytes: 512MiB")
open("/tmp/decay.yaml", "w").write(cfg)
srv = subprocess.Popen([f"{ROOT}/build/release/service/sluice", "serve", "--config", "/tmp/decay.yaml",
                        "--listen", "127.0.0.1:18095"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = "http://127.0.0.1:18095"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/readyz", timeout=1); break
    except Exception: time.sleep(0.1)
body = "".join(json.dumps({"i": i, "a": i % 10, "user": f"user-{i}@example.com"}, separators=(",", ":")) + "\n"
               for i in range(10000)).encode()
done = []  # (finish time, state)
lock = threading.Lock()
deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 90)
def loop():
    while time.monotonic() < deadline:
        req = urllib.request.Request(base + "/v1/jobs?pipeline=bulk&wait=120", data=body,
                                     headers={"Content-Type": "application/x-ndjson"})
        st = json.load(urllib.request.urlopen(req, timeout=130))
        with lock: done.append((time.monotonic(), st["state"]))
t0 = time.monotonic()
ths = [threading.Thread(target=loop) for _ in range(2)]
[t.start() for t in ths]; [t.join() for t in ths]
metrics = urllib.request.urlopen(base + "/metrics").read().decode()
srv.terminate(); srv.wait()
done.sort()
# items/s per 10-second window
w = 10
buckets = {}
for t, s in done: buckets.setdefault(int((t - t0) // w), []).append(s)
for b in sorted(buckets):
    n = len(buckets[b]); bad = sum(1 for s in buckets[b] if s != "done")
    print(f"{b*w:4d}-{(b+1)*w:<4d} s: {n*10000/w/1000:7.1f} k items/s  ({n} jobs, {bad} not done)")
print("jobs:", len(done), "results retained at most ~", len(done) * 9000, "records")
