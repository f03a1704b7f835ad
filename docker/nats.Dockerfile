# NATS JetStream for the `cluster` profile of docker/compose.yaml
# (docs/deploy.md, docs/cluster.md):
#
#   docker build -t sluice-nats -f docker/nats.Dockerfile docker
#   docker run --rm -p 4222:4222 -v nats-data:/data sluice-nats
#
# Debian's nats-server 2.9 on debian:bookworm-slim: the server that
# scripts/bootstrap installs and the cluster tests run against, built from
# the same base image as sluice's, so the cluster profile needs no image from
# another registry. JetStream on (-js) with file storage in /data (mount a
# volume there: the jobs, items and results of the cluster live in it), the
# monitoring port 8222 for /healthz, /varz and /jsz.

FROM debian:bookworm-slim

# The package's postinst creates the system user `nats`; /data belongs to
# it, so a new named volume mounted there is writable by it.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nats-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
      /var/log/apt /var/log/dpkg.log \
 && mkdir /data \
 && chown nats:nats /data

USER nats
WORKDIR /data
EXPOSE 4222 8222
# nats-server shuts down cleanly on SIGTERM (its store is flushed).
STOPSIGNAL SIGTERM
# GET /healthz on the monitoring port, through bash's /dev/tcp (no HTTP
# client in the image): 200 once the server and JetStream are up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8222 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 s <&3 && [[ $s == 'HTTP/1.'?' 200'* ]]"]
ENTRYPOINT ["/usr/sbin/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
