#!/usr/bin/env python3
"""Checks the Grafana dashboard against a live sluice.

Extracts every metric name from the PromQL of every panel (rows included) and
template variable of docker/grafana/dashboards/sluice.json, and checks that
each is a family of a live sluice's /metrics (`# TYPE name ...`; a histogram
also as name_bucket, name_sum, name_count). With --prometheus, also runs every
query on a Prometheus that scrapes sluice, so a query that does not parse or
(with --require-data) returns nothing fails too.

  docker/check-dashboard.py --metrics-url http://127.0.0.1:8080/metrics
  docker/check-dashboard.py --metrics-file metrics.txt
  docker/check-dashboard.py --metrics-url URL --prometheus http://127.0.0.1:9090

The panels of the row "Cluster" use the sluice_cluster_* families, which only
a cluster-mode replica has (docs/cluster.md): against a single process they
are skipped, and say so.

Exit 0 when every name exists (and every query ran), 1 otherwise. Python 3
standard library only. tests/integration/deploy_assets_test.cpp makes the
same check in CI.
"""

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_DASHBOARD = Path(__file__).resolve().parent / "grafana" / "dashboards" / "sluice.json"

# Words of PromQL that are not metric names when they are not followed by "(".
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
# Aggregation operators, which may be followed by `by (...)` before their "(".
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
# Modifiers followed by a parenthesised list of label names.
LABEL_LIST_MODIFIERS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
NUMBER = re.compile(r"(0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)([a-zA-Z]+[0-9]*)*")
GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]")


def metric_names(expr):
    """The metric names a PromQL expression selects, in order of appearance."""
    # Grafana variables may stand anywhere (a range, a label value): drop them.
    text = GRAFANA_VARIABLE.sub(" ", expr)
    names = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":  # a string
            end = i + 1
            while end < n and text[end] != c:
                end += 2 if text[end] == "\\" else 1
            i = end + 1
        elif c == "#":  # a comment, to the end of the line
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "{":  # label matchers: skip to the closing brace, strings included
            i += 1
            while i < n and text[i] != "}":
                if text[i] in "\"'`":
                    q, i = text[i], i + 1
                    while i < n and text[i] != q:
                        i += 2 if text[i] == "\\" else 1
                i += 1
            i += 1
        elif c == "[":  # a range or subquery: durations only
            end = text.find("]", i)
            i = n if end < 0 else end + 1
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            m = NUMBER.match(text, i)
            i = m.end() if m and m.end() > i else i + 1
        elif IDENT.match(text, i):
            m = IDENT.match(text, i)
            word, i = m.group(0), m.end()
            rest = text[i:].lstrip()
            if word.lower() in LABEL_LIST_MODIFIERS:
                if rest.startswith("("):  # skip the label list
                    i = text.index("(", i)
                    close = text.find(")", i)
                    i = n if close < 0 else close + 1
            elif rest.startswith("("):  # a function or an aggregation
                pass
            elif word.lower() in KEYWORDS or word.lower() in AGGREGATIONS:
                pass
            else:
                names.append(word)
        else:
            i += 1
    return names


def variable_queries(dashboard):
    """(name, PromQL) of each Prometheus template variable's query."""
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if not isinstance(query, str) or not query:
            continue
        m = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.S)
        if m:
            # label_values(label) or label_values(selector, label)
            args = m.group(1)
            depth, split = 0, -1
            for pos, ch in enumerate(args):
                depth += ch in "({["
                depth -= ch in ")}]"
                if ch == "," and depth == 0:
                    split = pos
            query = args[:split] if split >= 0 else ""
        else:
            m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
            if m:
                query = m.group(1)
            elif re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", query, re.S):
                query = ""
        if query.strip():
            out.append(("", f"variable ${var.get('name')}", query))
    return out


CLUSTER_ROW = "Cluster"


def panel_queries(panels, row=""):
    """(row title, panel title, PromQL) of every target of every panel, rows'
    panels included. A panel belongs to the last row before it (an expanded
    row) or to the row that holds it (a collapsed one)."""
    out = []
    for panel in panels or []:
        if panel.get("type") == "row":
            row = panel.get("title", "")
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip():
                out.append((row, panel.get("title", f"panel {panel.get('id')}"), expr))
        out.extend(panel_queries(panel.get("panels"), row))
    return out


def families(metrics_text):
    """name -> type for each `# TYPE name type` line."""
    types = {}
    for line in metrics_text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[1] == "TYPE":
            types[parts[2]] = parts[3]
    return types


def exists(name, types):
    if name in types:
        return True
    for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
                          ("_count", {"histogram", "summary"})):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) in kinds:
            return True
    return False


def substitute(expr):
    """A Grafana query as Prometheus can run it."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    expr = expr.replace("$__range", "5m")
    return GRAFANA_VARIABLE.sub(".*", expr)


def run_query(prometheus, expr):
    url = prometheus.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", "query failed")
    return len(body["data"]["result"]), None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--metrics-url", help="a live sluice's /metrics")
    source.add_argument("--metrics-file", type=Path, help="a saved /metrics text")
    parser.add_argument("--prometheus", help="also run every query on this Prometheus")
    parser.add_argument("--require-data", action="store_true",
                        help="with --prometheus: fail a query that returns no series")
    args = parser.parse_args()

    dashboard = json.loads(args.dashboard.read_text())
    if args.metrics_url:
        with urllib.request.urlopen(args.metrics_url, timeout=10) as response:
            metrics_text = response.read().decode()
    else:
        metrics_text = args.metrics_file.read_text()
    types = families(metrics_text)

    queries = panel_queries(dashboard.get("panels")) + variable_queries(dashboard)
    cluster = any(name.startswith("sluice_cluster_") for name in types)
    failures = 0
    checked = set()
    for row, where, expr in queries:
        if row == CLUSTER_ROW and not cluster:
            print(f"skip  {where}: cluster mode only, and this sluice is a single process")
            continue
        names = metric_names(expr)
        if not names:
            print(f"FAIL  {where}: no metric name in {expr!r}")
            failures += 1
            continue
        missing = [name for name in names if not exists(name, types)]
        checked.update(names)
        status = "ok  " if not missing else "FAIL"
        detail = ", ".join(dict.fromkeys(names))
        if missing:
            detail += f"  -- not in /metrics: {', '.join(missing)}"
            failures += 1
        if args.prometheus:
            count, error = run_query(args.prometheus, substitute(expr))
            if error:
                status, failures = "FAIL", failures + 1
                detail += f"  -- Prometheus: {error}"
            else:
                detail += f"  [{count} series]"
                if count == 0 and args.require_data:
                    status, failures = "FAIL", failures + 1
        print(f"{status}  {where}: {detail}")

    print(f"{len(queries)} queries, {len(checked)} metric names "
          f"({', '.join(sorted(checked))}); {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
