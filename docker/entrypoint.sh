#!/bin/sh
# ENTRYPOINT of the sluice image (docs/deploy.md):
#   (no arguments)               sluice serve --config "$SLUICE_CONFIG"
#   --listen ADDR, --config FILE  the same with those options added (the last
#                                 --config wins, so an argument overrides the env)
#   serve [OPTIONS]              the same
#   check FILE, --version, help  that sluice command
#   anything else                runs it (e.g. `bash` for a shell in the image)
# exec keeps sluice as PID 1, so the SIGTERM of `docker stop` reaches it and
# drains it.
set -eu
config="${SLUICE_CONFIG:-/etc/sluice/sluice.yaml}"
case "${1:-}" in
  serve)
    shift
    exec /usr/local/bin/sluice serve --config "$config" "$@"
    ;;
  check | version | help | --version | --help | -h)
    exec /usr/local/bin/sluice "$@"
    ;;
  "" | -*)
    exec /usr/local/bin/sluice serve --config "$config" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
