"""`sluice test FILE...` (issue 15, docs/config-tests.md), run as CI and a
user would: the example tests of config/tests/ pass (exit 0); a failing
test file prints FAIL with a diff of the wrong record and the wrong
aggregate (exit 1); an invalid test file names the file and the key (exit
2); an invalid config prints its errors as `sluice check` does (exit 1); a
relative `config` is found next to the test file; an ordered case catches
records out of order; a case that outlives its `timeout` fails. No server.

    /usr/bin/python3 tests/e2e/config_tests_test.py build/dev/service/sluice
"""
import glob
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sluice_server import binary_from_argv, check  # noqa: E402

SOURCE = os.environ.get(
    "SLUICE_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
DEFAULT_CONFIG = os.path.join(SOURCE, "config", "default.yaml")


def run(binary, *files, cwd=None):
    """(exit code, stdout, stderr) of `sluice test FILES`."""
    proc = subprocess.run([binary, "test", *files], capture_output=True,
                          text=True, timeout=90, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def examples_pass(binary):
    files = sorted(glob.glob(os.path.join(SOURCE, "config", "tests",
                                          "*.yaml")))
    check(len(files) >= 2, "config/tests/ has the example tests: %s" % files)
    code, out, err = run(binary, *files)
    check(code == 0, "the examples pass: exit %d\n%s%s" % (code, out, err))
    lines = out.splitlines()
    passes = [line for line in lines if line.startswith("PASS ")]
    # At least one case per pipeline of the default config, each checking
    # its aggregate (the examples themselves are read to be sure).
    for pipeline in ("wordcount", "enrich"):
        check(any(os.path.basename(line.split(":")[0][5:]) ==
                  pipeline + ".yaml" for line in passes),
              "a passing case of %s:\n%s" % (pipeline, out))
    check(not any(line.startswith("FAIL") for line in lines), out)
    check(lines[-1] == "%d passed, 0 failed" % len(passes),
          "the summary counts every case: %r" % lines[-1])


FAILING = """
config: %s
pipeline: wordcount
tests:
  - name: right
    input: [{text: "a b a"}]
    aggregate: {a: 2, b: 1}
  - name: wrong record
    input: [{text: "a b"}]
    results:
      - {seq: 0, value: a}
      - {seq: 0, value: zebra}
  - name: wrong aggregate
    input: [{text: "x x"}]
    aggregate: {x: 3}
    items: {out: 2}
""" % DEFAULT_CONFIG


def failing_file_shows_the_diff(binary, folder):
    path = write(folder, "failing.yaml", FAILING)
    code, out, err = run(binary, path)
    check(code == 1, "a failing case exits 1, got %d\n%s%s" % (code, out,
                                                               err))
    check("PASS %s: right\n" % path in out, out)
    check("FAIL %s: wrong record\n" % path in out, out)
    check("FAIL %s: wrong aggregate\n" % path in out, out)
    wrong_record = out.split("wrong record\n", 1)[1].split("FAIL", 1)[0]
    # The record expected and missing, and the record got instead.
    check('-   "value": "zebra"' in wrong_record, wrong_record)
    check('+   "value": "b"' in wrong_record, wrong_record)
    check("1 expected record not found" in wrong_record, wrong_record)
    wrong_aggregate = out.split("wrong aggregate\n", 1)[1]
    check("aggregate: (- expected, + got)" in wrong_aggregate,
          wrong_aggregate)
    check('-   "x": 3' in wrong_aggregate and '+   "x": 2' in wrong_aggregate,
          wrong_aggregate)
    check("items:" not in wrong_aggregate, "the right count is not shown:\n"
          + wrong_aggregate)
    check(out.splitlines()[-1] == "1 passed, 2 failed", out)


def invalid_file_names_the_key(binary, folder):
    path = write(folder, "invalid.yaml", """
pipeline: wordcount
tests:
  - name: typo
    input: []
    items: {out: many}
""")
    code, out, err = run(binary, path)
    check(code == 2, "an invalid test file exits 2, got %d\n%s%s" % (code, out,
                                                                     err))
    check("%s: tests[0].items.out: must be an integer >= 0" % path in err,
          err)
    # A broken file does not stop the others, and 2 wins over 1.
    failing = write(folder, "failing2.yaml", FAILING)
    code, out, err = run(binary, path, failing)
    check(code == 2, "invalid + failing exits 2, got %d" % code)
    check("FAIL %s: wrong record" % failing in out, out)
    code, out, err = run(binary, os.path.join(folder, "absent.yaml"))
    check(code == 2 and "absent.yaml: cannot open the file" in err, err)
    code, out, err = run(binary)
    check(code == 2 and "expected at least one FILE" in err, err)


def invalid_config_prints_its_errors(binary, folder):
    path = write(folder, "badconfig.yaml", """
config:
  pipelines:
    - name: p
      stages: [{processor: {type: passthrough}, workers: 0}]
pipeline: p
tests:
  - {input: [1], state: done}
""")
    code, out, err = run(binary, path)
    check(code == 1, "an invalid config exits 1, got %d\n%s%s" % (code, out,
                                                                   err))
    check("FAIL %s: the config (inline) is invalid" % path in out, out)
    check("    pipelines[0].stages[0].workers: must be >= 1" in out, out)


def relative_config_ordered_and_timeout(binary, folder):
    sub = os.path.join(folder, "suite")
    os.mkdir(sub)
    write(sub, "numbers.yaml", """
pipelines:
  - name: tag
    stages:
      - {name: set, processor: {type: set, fields: {/tagged: true}}, workers: 4}
  - name: slow
    stages:
      - {name: wait, processor: {type: delay, duration: 1s}}
""")
    path = write(sub, "numbers_test.yaml", """
config: numbers.yaml
tests:
  - name: in order
    pipeline: tag
    ordered: true
    input: [{n: 1}, {n: 2}, {n: 3}]
    results:
      - {seq: 0, value: {n: 1, tagged: true}}
      - {seq: 2, value: {n: 3, tagged: true}}
      - {seq: 1, value: {n: 2, tagged: true}}
  - name: any order
    pipeline: tag
    input: [{n: 1}, {n: 2}]
    results:
      - {seq: 1, value: {n: 2, tagged: true}}
      - {seq: 0, value: {n: 1, tagged: true}}
  - name: too slow
    pipeline: slow
    input: [1]
    timeout: 200ms
    state: done
""")
    # Run from another folder: `config` is relative to the test file.
    code, out, err = run(binary, path, cwd="/")
    check(code == 1, "exit 1, got %d\n%s%s" % (code, out, err))
    check("PASS %s: any order\n" % path in out, out)
    in_order = out.split("in order\n", 1)[1]
    check("in another order; at 1" in in_order, in_order)
    check("FAIL %s: too slow\n    the job did not finish within 200ms"
          % path in out, out)


def main():
    binary = binary_from_argv()
    examples_pass(binary)
    with tempfile.TemporaryDirectory(prefix="sluice-e2e-test-") as folder:
        failing_file_shows_the_diff(binary, folder)
        invalid_file_names_the_key(binary, folder)
        invalid_config_prints_its_errors(binary, folder)
        relative_config_ordered_and_timeout(binary, folder)
    print("config tests: ok")


if __name__ == "__main__":
    main()
