# syntax=docker/dockerfile:1
# Build: docker build -t handoff .
# Run:   docker run -p 8080:8080 -v handoff-data:/var/lib/handoff/data \
#          -e DASHBOARD_TOKEN=$(openssl rand -hex 16) -e CRM_WEBHOOK_SECRET=whsec_... handoff
#        The image listens on all addresses, so it is never open: the API and the CLI take
#        `Authorization: Bearer $DASHBOARD_TOKEN`. For the dashboard's login add [dashboard]
#        users in a config of your own (mount it at /etc/handoff/handoff.toml and run
#        `serve --config /etc/handoff/handoff.toml`). tests/it/docker.rs runs this file's layout.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# A release binary without debug info (124 MB with it).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies first, in a layer that changes only with Cargo.toml and Cargo.lock: every target
# Cargo.toml names gets a stub, the dependencies build, the stubs go.
COPY Cargo.toml Cargo.lock ./
COPY benches/loadgen/Cargo.toml benches/loadgen/
RUN mkdir -p src tests/it benches/loadgen/src \
 && for stub in src/main.rs benches/loadgen/src/main.rs tests/it/main.rs tests/mappings.rs \
        tests/mapping_fuzz.rs benches/mapping.rs; do echo 'fn main() {}' > "$stub"; done \
 && touch src/lib.rs \
 && cargo build --release --locked --bin handoff \
 && rm -rf src tests benches
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin handoff

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/handoff handoff \
 && mkdir -p /var/lib/handoff/data \
 && chown -R handoff:handoff /var/lib/handoff
COPY --from=build /src/target/release/handoff /usr/local/bin/handoff
COPY mappings /etc/handoff/mappings
COPY connectors /etc/handoff/connectors
COPY schemas /etc/handoff/schemas
COPY config.example.toml /etc/handoff/config.example.toml
WORKDIR /var/lib/handoff
ENV HANDOFF_LISTEN=0.0.0.0:8080 \
    HANDOFF_DATA_DIR=/var/lib/handoff/data \
    HANDOFF_MAPPINGS_DIR=/etc/handoff/mappings \
    HANDOFF_CONNECTORS_DIR=/etc/handoff/connectors \
    HANDOFF_SCHEMAS_DIR=/etc/handoff/schemas \
    HANDOFF_LOG__FORMAT=json \
    HANDOFF_DASHBOARD__TOKENS="[{ name = 'ops', token_env = 'DASHBOARD_TOKEN', role = 'operator' }]"
USER handoff
VOLUME ["/var/lib/handoff/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["handoff", "healthcheck", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["handoff"]
CMD ["serve"]
