# sluice's container image (docs/deploy.md).
#
#   docker build -t sluice .
#   docker run --rm -p 8080:8080 sluice
#   podman build --format docker -t sluice .   # podman: keep the HEALTHCHECK
#
# Two stages: `build` compiles the release preset on debian:bookworm with the
# Debian packages of scripts/bootstrap; the runtime stage is
# debian:bookworm-slim with only the shared libraries the binary links
# (derived from it with ldd), the binary, and config/default.yaml at
# /etc/sluice/sluice.yaml, run as an unprivileged user.

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------
FROM debian:bookworm AS build

# Exactly scripts/bootstrap's PACKAGES (tests/integration/deploy_assets_test.cpp
# fails when the two lists differ), so the image builds with what developers
# and CI build with.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build git pkg-config \
      libboost1.81-dev libboost-url1.81-dev libboost-fiber1.81-dev libboost-context1.81-dev \
      nlohmann-json3-dev prometheus-cpp-dev libyaml-cpp-dev libluajit-5.1-dev libssl-dev \
      libgtest-dev libgmock-dev libbenchmark-dev libtbb-dev golang-go \
      clang-format clang-tidy \
      clang-14 libclang-rt-14-dev llvm-14 \
      prometheus \
      wrk nginx \
      curl ca-certificates \
      libnats-dev nats-server \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the `sluice` target needs, so edits to tests, benches or docs
# do not invalidate the compile layer.
COPY CMakeLists.txt CMakePresets.json ./
COPY cmake/ cmake/
COPY patterns/ patterns/
COPY service/ service/
COPY config/ config/

# The release preset, tests, benchmarks and examples off, only the sluice
# target. JOBS defaults to every core (`--build-arg JOBS=2` to limit it).
ARG JOBS=
RUN cmake --preset release \
      -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_BENCH=OFF -DSLUICE_BUILD_EXAMPLES=OFF \
      -DSLUICE_INSTALL=OFF >/dev/null \
 && cmake --build --preset release --target sluice --parallel "${JOBS:-$(nproc)}"

# The stripped binary, and the Debian packages that provide the libraries it
# links (one per line), for the runtime stage to install.
COPY docker/runtime-packages.sh /usr/local/bin/runtime-packages
RUN mkdir /out \
 && install -m 0755 -s build/release/service/sluice /out/sluice \
 && runtime-packages /out/sluice >/out/runtime-packages \
 && echo "runtime packages:" $(cat /out/runtime-packages)

# ---------------------------------------------------------------------------
# runtime
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# The libraries' packages (today libyaml-cpp0.7, libssl3,
# libprometheus-cpp-core1.0, libboost-url1.81.0 and the C/C++ runtimes the base
# already has; libluajit-5.1-2 joins by itself once the binary links it), no
# recommends, no apt lists; then the user the server runs as.
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/runtime-packages \
      apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
      /var/log/apt /var/log/dpkg.log /tmp/runtime-packages \
 && groupadd --gid 10001 sluice \
 && useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin sluice

COPY --from=build /out/sluice /usr/local/bin/sluice
COPY config/default.yaml /etc/sluice/sluice.yaml
COPY docker/entrypoint.sh /usr/local/bin/sluice-entrypoint
COPY docker/healthcheck.sh /usr/local/bin/sluice-healthcheck
# Fails the build if a library is missing or the shipped config is invalid.
RUN sluice --version && sluice check /etc/sluice/sluice.yaml >/dev/null

# SLUICE_CONFIG: the config `serve` loads (mount yours there, or point this
# elsewhere). SLUICE_LISTEN: the default config's listen address; the
# healthcheck probes its port.
ENV SLUICE_CONFIG=/etc/sluice/sluice.yaml \
    SLUICE_LISTEN=0.0.0.0:8080
USER 10001:10001
WORKDIR /
EXPOSE 8080
# SIGTERM drains: running jobs get server.shutdown_grace (30 s by default),
# so give `docker stop` more than that (`-t 40`, compose stop_grace_period).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/sluice-healthcheck"]
ENTRYPOINT ["/usr/local/bin/sluice-entrypoint"]
CMD []
