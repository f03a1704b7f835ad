"""`sluice check` on cluster configs (DESIGN.md §3.7, docs/cluster.md): a
keyed stage (`key:`) is refused when cluster mode is on, whether the NATS
url comes from SLUICE_NATS_URL through the default `${SLUICE_NATS_URL:-}`
or is written in the file, with the reason; the same file passes without
cluster mode; so does an aggregate window; a cluster config with neither
passes. The check never connects to NATS (nats://127.0.0.1:1 listens
nowhere).

    /usr/bin/python3 tests/e2e/cluster_check_test.py build/dev/service/sluice
"""
import os
import subprocess
import tempfile

from sluice_server import binary_from_argv, check

KEYED = """
cluster:
  nats: { url: "%s", ack_wait: 2s }
pipelines:
  - name: per_user
    stages:
      - name: charge
        processor: { type: set, fields: { /charged: true } }
        workers: 4
        key: /user
    aggregate: { type: count }
"""

REFUSAL = ("pipelines[0].stages[0].key: per-key ordering is not available "
           "in cluster mode")
WINDOW_REFUSAL = ("pipelines[0].aggregate.window: windows are not available "
                  "in cluster mode")


def sluice_check(binary, text, folder, nats_url=None):
    """(exit code, stdout + stderr) of `sluice check FILE`, with
    SLUICE_NATS_URL set to nats_url, or unset when None."""
    path = os.path.join(folder, "config.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_NATS_URL"}
    if nats_url is not None:
        env["SLUICE_NATS_URL"] = nats_url
    proc = subprocess.run([binary, "check", path], capture_output=True,
                          text=True, env=env, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def main():
    binary = binary_from_argv()
    from_env = KEYED % "${SLUICE_NATS_URL:-}"
    in_file = KEYED % "nats://127.0.0.1:1"
    unkeyed = from_env.replace("        key: /user\n", "")
    windowed = unkeyed.replace("{ type: count }",
                               "{ type: count, window: { items: 10 } }")
    off, on = None, "nats://127.0.0.1:1"
    # (what, config text, SLUICE_NATS_URL, the refusal expected or None)
    cases = [
        ("a keyed stage without cluster mode", from_env, off, None),
        ("a keyed stage with SLUICE_NATS_URL set", from_env, on, REFUSAL),
        ("SLUICE_NATS_URL empty: cluster mode off", from_env, "", None),
        ("a keyed stage with cluster.nats.url in the file", in_file, off,
         REFUSAL),
        ("a cluster config without a key", unkeyed, on, None),
        ("a window without cluster mode", windowed, off, None),
        ("a window with SLUICE_NATS_URL set", windowed, on, WINDOW_REFUSAL),
    ]
    with tempfile.TemporaryDirectory(prefix="sluice-cluster-check-") as tmp:
        for what, text, url, refusal in cases:
            rc, out = sluice_check(binary, text, tmp, url)
            if refusal is None:
                check(rc == 0, "%s: exit %d, want 0\n%s" % (what, rc, out))
            else:
                check(rc != 0 and refusal in out, "%s: exit %d, want the "
                      "refusal %r\n%s" % (what, rc, refusal, out))
    print("cluster check: ok (%d cases)" % len(cases))


if __name__ == "__main__":
    main()
