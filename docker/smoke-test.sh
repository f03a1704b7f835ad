#!/usr/bin/env bash
# Smoke test of the sluice image: builds it, starts it, waits until its
# HEALTHCHECK passes, posts a wordcount job and checks its results, checks
# that /metrics carries every sluice family (and the Grafana dashboard's
# metric names, when python3 is there), then sends the image's STOPSIGNAL
# (SIGTERM) and checks a clean exit (status 0, "sluice: stopped").
#
#   docker/smoke-test.sh                          # docker
#   CONTAINER=podman docker/smoke-test.sh         # podman run
#   CONTAINER=podman-chroot docker/smoke-test.sh  # podman builds; no `podman run`
#
# CONTAINER=podman-chroot is for hosts where podman can build but not run
# containers (e.g. a sandbox that refuses setrlimit): it builds with
# `podman build --pull=never --isolation=chroot`, mounts the image
# (`podman image mount`, needs root) and starts the image's ENTRYPOINT + CMD
# with chroot as the image's USER, with the image's ENV, on 127.0.0.1:0
# (SLUICE_LISTEN). The HEALTHCHECK command runs the same way. The network is
# the host's, so nothing listens beyond 127.0.0.1.
#
# Environment:
#   CONTAINER   docker (default), podman or podman-chroot
#   CONTEXT     build context (default: the repository root)
#   IMAGE       image tag to build and test (default: sluice)
#   SKIP_BUILD  1: test IMAGE as it is
#   BUILD_ARGS  extra arguments for the build (e.g. "--build-arg JOBS=2")
# Needs curl. Exit 0 when every check passed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
CONTAINER="${CONTAINER:-docker}"
CONTEXT="${CONTEXT:-$(dirname "$here")}"
IMAGE="${IMAGE:-sluice}"
SKIP_BUILD="${SKIP_BUILD:-0}"
read -r -a build_args <<<"${BUILD_ARGS:-}"

case "$CONTAINER" in
  docker | podman) engine="$CONTAINER" mode=run ;;
  podman-chroot) engine=podman mode=chroot ;;
  *) echo "smoke-test: CONTAINER must be docker, podman or podman-chroot" >&2; exit 2 ;;
esac
command -v "$engine" >/dev/null || { echo "smoke-test: $engine not found" >&2; exit 2; }
command -v curl >/dev/null || { echo "smoke-test: curl not found" >&2; exit 2; }
if [[ $mode == chroot && $EUID -ne 0 ]]; then
  echo "smoke-test: CONTAINER=podman-chroot needs root (podman image mount, chroot)" >&2
  exit 2
fi

work="$(mktemp -d /tmp/sluice-smoke.XXXXXX)"
name="sluice-smoke-$$"
pid=""          # chroot mode: the server's pid
mounted=""      # chroot mode: the image's mount point
failures=0

log() { printf 'smoke-test: %s\n' "$*"; }
pass() { printf '  ok    %s\n' "$*"; }
fail() { printf '  FAIL  %s\n' "$*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

cleanup() {
  set +e
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  if [[ $mode == run ]]; then
    "$engine" rm -f "$name" >/dev/null 2>&1
  fi
  if [[ -n $mounted ]]; then
    podman image unmount "$IMAGE" >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
  build=("$engine" build -t "$IMAGE")
  # podman builds OCI images by default, which drop HEALTHCHECK.
  [[ $engine == podman ]] && build+=(--format docker)
  [[ $mode == chroot ]] && build+=(--pull=never --isolation=chroot)
  log "building: ${build[*]} ${build_args[*]} $CONTEXT"
  start=$SECONDS
  if ! "${build[@]}" "${build_args[@]}" "$CONTEXT" >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log"
    log "build failed"
    exit 1
  fi
  log "built $IMAGE in $((SECONDS - start)) s"
fi
size="$("$engine" image inspect --format '{{.Size}}' "$IMAGE")"
log "image $IMAGE: $((size / 1000000)) MB ($size bytes)"

inspect() { "$engine" image inspect --format "$1" "$IMAGE"; }
user="$(inspect '{{.Config.User}}')"
stop_signal="$(inspect '{{.Config.StopSignal}}')"
mapfile -t healthcheck < <(inspect '{{if .Config.Healthcheck}}{{range .Config.Healthcheck.Test}}{{println .}}{{end}}{{end}}' | sed '/^$/d')
check "image runs as a non-root user ($user)" test -n "$user" -a "${user%%:*}" != 0 -a "${user%%:*}" != root
check "image's STOPSIGNAL is SIGTERM ($stop_signal)" test "$stop_signal" = SIGTERM
check "image has a HEALTHCHECK (${healthcheck[*]:-none})" test "${#healthcheck[@]}" -ge 2
check "image exposes 8080/tcp" grep -q '8080/tcp' <<<"$(inspect '{{json .Config.ExposedPorts}}')"
case "${healthcheck[0]:-}" in
  CMD) health_cmd=("${healthcheck[@]:1}") ;;
  CMD-SHELL) health_cmd=(/bin/sh -c "${healthcheck[*]:1}") ;;
  *) health_cmd=() ;;
esac

# --------------------------------------------------------------------------
# start (and a few one-off runs of the entrypoint)
# --------------------------------------------------------------------------
if [[ $mode == chroot ]]; then
  mounted="$(podman image mount "$IMAGE")"
  mapfile -t image_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
  mapfile -t entrypoint < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
  mapfile -t cmd < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
  # As the container would: the image's user, environment and root, cwd /.
  in_image() { env -i "${image_env[@]}" "$@"; }
  once() {  # once [VAR=value...] -- ARGS...: runs the entrypoint with ARGS
    local vars=()
    while [[ $1 != -- ]]; do vars+=("$1"); shift; done
    shift
    in_image "${vars[@]}" chroot --userspec="$user" "$mounted" "${entrypoint[@]}" "$@"
  }
  log "image mounted at $mounted; starting ${entrypoint[*]} ${cmd[*]} as $user"
  # A simple command, not a function: $! is then the server itself (env,
  # chroot and the entrypoint each exec the next).
  env -i "${image_env[@]}" SLUICE_LISTEN=127.0.0.1:0 chroot --userspec="$user" "$mounted" \
    "${entrypoint[@]}" "${cmd[@]}" >"$work/stdout" 2>"$work/stderr" &
  pid=$!
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/stdout" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  port="$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$work/stdout")"
  if [[ -z $port ]]; then
    cat "$work/stderr"
    log "the server did not start"
    exit 1
  fi
  uid="$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
  check "server process runs as uid $uid (image user $user)" test "$uid" = "${user%%:*}"
  health() { in_image SLUICE_LISTEN="127.0.0.1:$port" chroot --userspec="$user" "$mounted" "${health_cmd[@]}"; }
else
  once() {
    local vars=()
    while [[ $1 != -- ]]; do vars+=(-e "$1"); shift; done
    shift
    "$engine" run --rm "${vars[@]}" "$IMAGE" "$@"
  }
  log "starting: $engine run -d --name $name -p 127.0.0.1::8080 $IMAGE"
  "$engine" run -d --name "$name" -p 127.0.0.1::8080 "$IMAGE" >/dev/null
  port="$("$engine" port "$name" 8080/tcp | head -n 1)"
  port="${port##*:}"
  if [[ $engine == podman ]]; then
    health() { podman healthcheck run "$name" >/dev/null 2>&1; }
  else
    health() { [[ "$(docker inspect --format '{{.State.Health.Status}}' "$name")" == healthy ]]; }
  fi
fi
base="http://127.0.0.1:$port"
log "server on $base"

check "entrypoint --version prints the version" \
  grep -q '^sluice [0-9]' <<<"$(once -- --version 2>&1)"
check "entrypoint check validates /etc/sluice/sluice.yaml" \
  grep -q 'pipeline' <<<"$(once -- check /etc/sluice/sluice.yaml 2>&1)"
check "SLUICE_CONFIG selects the config (a missing file fails, naming it)" \
  grep -q '/nonexistent.yaml' <<<"$(once SLUICE_CONFIG=/nonexistent.yaml -- 2>&1 || true)"
check "--config overrides SLUICE_CONFIG" \
  grep -q '/other.yaml' <<<"$(once -- --config /other.yaml 2>&1 || true)"

# --------------------------------------------------------------------------
# healthy
# --------------------------------------------------------------------------
healthy=0
start=$SECONDS
while ((SECONDS - start < 60)); do
  if health; then healthy=1; break; fi
  sleep 1
done
if ((healthy)); then
  pass "healthy after $((SECONDS - start)) s (HEALTHCHECK: ${health_cmd[*]:-engine})"
else
  fail "not healthy within 60 s"
fi

# --------------------------------------------------------------------------
# a wordcount job
# --------------------------------------------------------------------------
http() { curl -sS --max-time 20 "$@"; }
code() { curl -sS --max-time 20 -o /dev/null -w '%{http_code}' "$@"; }
check "/healthz answers 200" test "$(code "$base/healthz")" = 200
check "/readyz answers 200" test "$(code "$base/readyz")" = 200

job="$(http -X POST "$base/v1/jobs?pipeline=wordcount&wait=10" \
  -H 'Content-Type: application/json' -d '[{"text": "a b a"}, {"text": "c"}]')"
echo "  job: $job"
id="$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' <<<"$job")"
check "wordcount job is done" grep -qF '"state":"done"' <<<"$job"
check "wordcount counts: in 2, out 4" \
  grep -qF '"items":{"cancelled":0,"errors":0,"filtered":0,"in":2,"out":4}' <<<"$job"
check "wordcount aggregate is {\"a\":2,\"b\":1,\"c\":1}" \
  grep -qF '"aggregate":{"a":2,"b":1,"c":1}' <<<"$job"
results="$(http "$base/v1/jobs/$id/results")"
echo "  results: $results"
check "results: 4 records" grep -qF '"total":4' <<<"$results"
for word in a b c; do
  check "results include \"$word\"" grep -qF "\"value\":\"$word\"" <<<"$results"
done

# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------
http "$base/metrics" >"$work/metrics"
for family in sluice_http_requests_total sluice_http_request_duration_seconds \
  sluice_jobs_total sluice_jobs_active sluice_items_total sluice_stage_duration_seconds \
  sluice_stage_queue_depth sluice_stage_workers_busy sluice_websocket_connections \
  sluice_admission_rejections_total sluice_build_info; do
  check "/metrics has $family" grep -q "^# TYPE $family " "$work/metrics"
done
# prometheus-cpp writes labels in name order.
check "/metrics counts the job's 2 items into stage words" \
  grep -qxF 'sluice_items_total{outcome="in",pipeline="wordcount",stage="words"} 2' "$work/metrics"
check "/metrics counts the done wordcount job" \
  grep -qxF 'sluice_jobs_total{pipeline="wordcount",state="done"} 1' "$work/metrics"
if command -v python3 >/dev/null; then
  if python3 "$here/check-dashboard.py" --metrics-file "$work/metrics" >"$work/dashboard" 2>&1; then
    pass "every metric of the Grafana dashboard is in /metrics ($(tail -n 1 "$work/dashboard"))"
  else
    cat "$work/dashboard"
    fail "the Grafana dashboard uses metrics /metrics lacks"
  fi
fi

# --------------------------------------------------------------------------
# SIGTERM: drain and exit 0
# --------------------------------------------------------------------------
log "sending ${stop_signal:-SIGTERM}"
stop_start=$SECONDS
if [[ $mode == chroot ]]; then
  kill -s "${stop_signal:-SIGTERM}" "$pid"
  status=0
  timeout 45 tail --pid="$pid" -f /dev/null || true
  wait "$pid" || status=$?
  pid=""
  logs="$(cat "$work/stderr")"
else
  "$engine" kill --signal "${stop_signal:-SIGTERM}" "$name" >/dev/null
  status="$(timeout 45 "$engine" wait "$name" || echo timeout)"
  logs="$("$engine" logs "$name" 2>&1)"
fi
check "exit status 0 after SIGTERM (got $status, in $((SECONDS - stop_start)) s)" test "$status" = 0
check "the log ends with \"sluice: stopped\"" grep -q 'sluice: stopped' <<<"$logs"

if ((failures)); then
  echo "--- server log ---"
  echo "$logs"
  log "$failures check(s) FAILED"
  exit 1
fi
log "all checks passed"
