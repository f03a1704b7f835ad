#!/bin/bash
# HEALTHCHECK of the sluice image: GET /healthz, healthy on a 200. It speaks
# HTTP through bash's /dev/tcp, so the image needs no HTTP client (curl and
# its libraries would add 8.9 MB to the image, busybox for its wget 2.2 MB).
#
# Where: SLUICE_HEALTHCHECK_ADDR (HOST:PORT) if set, else the address of
# SLUICE_LISTEN (the default config's listen address; 0.0.0.0 and :: become
# 127.0.0.1), else 127.0.0.1:8080. Docker's --timeout bounds the whole check;
# the read has its own 2-second limit.
set -u
addr="${SLUICE_HEALTHCHECK_ADDR:-${SLUICE_LISTEN:-127.0.0.1:8080}}"
port="${addr##*:}"
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
  "" | 0.0.0.0 | :: | "*") host=127.0.0.1 ;;
esac

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3 || exit 1
IFS= read -r -t 2 status <&3 || exit 1
exec 3<&-
status="${status%$'\r'}"
case "$status" in
  "HTTP/1."?" 200" | "HTTP/1."?" 200 "*) exit 0 ;;
  *) echo "sluice-healthcheck: $status" >&2; exit 1 ;;
esac
