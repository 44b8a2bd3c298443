# mcpgate's container image (docs/deploy.md, "Container image").
#
#   docker build -t mcpgate .                    # compiles mcpgate from source in a Rust container (BuildKit)
#   podman build --format docker -t mcpgate .    # the same with Podman (docker format keeps HEALTHCHECK); Podman
#                                                # before 4.4 also needs --build-arg MCPGATE_FROM=source
#   docker build --build-arg MCPGATE_FROM=prebuilt -t mcpgate .   # target/release/mcpgate, built on bookworm
#
# Build arguments:
#   RUST_IMAGE     the build stage's image (Debian bookworm, Rust >= 1.94, the workspace's rust-version)
#   RUNTIME_IMAGE  the runtime stage's base: glibc, libgcc_s and CA certificates are all mcpgate needs
#   MCPGATE_FROM   "source" (default): cargo build --release in RUST_IMAGE;
#                  "prebuilt": take an already built binary from the build context (no compiler involved)
#   MCPGATE_BINARY with MCPGATE_FROM=prebuilt, its path in the context (default target/release/mcpgate); it must
#                  be built for RUNTIME_IMAGE's glibc (a bookworm host, or a bookworm container)
#   VERSION        the org.opencontainers.image.version label
#
# Only the stage MCPGATE_FROM names is built: BuildKit and Buildah skip stages the target does not use. (Buildah
# before 1.29 ignores a global ARG's default when it works that out: hence MCPGATE_FROM=source spelled out.)

ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG MCPGATE_FROM=source

# ---- from source: the workspace compiled in the Rust image ---------------------------------------------------
FROM ${RUST_IMAGE} AS source
WORKDIR /src
# Only what cargo needs: the workspace manifest and lock, its members (bench/ceiling is one), nothing else.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY bench/ceiling ./bench/ceiling
# The cache mounts keep the crates.io download and the target directory between builds (BuildKit, Buildah);
# the binary is copied out of the cached target directory, which is not part of the stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p mcpgate \
    && install -D -m 0755 target/release/mcpgate /out/mcpgate \
    && mkdir /out/empty

# ---- prebuilt: a binary from the build context -----------------------------------------------------------------
FROM scratch AS prebuilt
ARG MCPGATE_BINARY=target/release/mcpgate
# WORKDIR makes /out/empty (Buildah at the next COPY): an empty directory, copied below to make directories.
WORKDIR /out/empty
COPY ${MCPGATE_BINARY} /out/mcpgate

# ---- the binary, from whichever stage MCPGATE_FROM names -------------------------------------------------------
FROM ${MCPGATE_FROM} AS binary
# An instruction of its own: Buildah 1.28 (`buildah bud`, `podman build --layers=false`) fails on an empty stage.
WORKDIR /out

# ---- runtime ---------------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mcpgate" \
      org.opencontainers.image.description="A production gateway and tool server for the Model Context Protocol" \
      org.opencontainers.image.source="https://github.com/mcpgate/mcpgate" \
      org.opencontainers.image.documentation="https://github.com/mcpgate/mcpgate/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# Owned by root and not writable by the server; only the audit log's directory belongs to its user (a volume
# mounted there starts with that owner). Directories are made by copying an empty one: a distroless base has no
# shell to run mkdir.
COPY --from=binary /out/mcpgate /usr/local/bin/mcpgate
COPY --from=binary /out/empty/ /etc/mcpgate/
COPY --from=binary /out/empty/ /var/log/
COPY --from=binary --chown=1001:1001 /out/empty/ /var/log/mcpgate/

# Relative paths in a config (script handlers, SQLite files) are resolved from the working directory: mount the
# config and its handlers/ here, and point MCP_CONFIG_PATH at the config (without one the embedded default serves).
WORKDIR /etc/mcpgate

# Listen on every interface of the container; PORT is read by both `serve` and the HEALTHCHECK's `health`, so they
# agree whatever a mounted config's `server.listen` says (change the port with -e PORT=…).
ENV BIND_IP=0.0.0.0 \
    PORT=8000

# A numeric user with no account in the base's /etc/passwd: the UID the Kubernetes manifests run as (runAsUser).
USER 1001:1001
EXPOSE 8000

# `mcpgate health` GETs /health on BIND_IP:PORT (a wildcard as loopback): exit 0 on 200. No curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/mcpgate", "health"]

# SIGTERM (the default stop signal) drains: in-flight requests get server.drain_timeout (30 s) to finish, so give
# the container a longer grace period than docker's default 10 s (docker run --stop-timeout 45).
ENTRYPOINT ["/usr/local/bin/mcpgate"]
CMD ["serve"]
