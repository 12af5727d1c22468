# syntax=docker/dockerfile:1
# Build: docker build -t handoff .
# Run:   docker run -p 8080:8080 -v handoff-data:/var/lib/handoff/data \
#          -e CRM_WEBHOOK_SECRET=whsec_... handoff
#        (mount your own config at /etc/handoff/handoff.toml and add `--config` to use it)

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin handoff

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
COPY config.example.toml /etc/handoff/config.example.toml
WORKDIR /var/lib/handoff
ENV HANDOFF_LISTEN=0.0.0.0:8080 \
    HANDOFF_DATA_DIR=/var/lib/handoff/data \
    HANDOFF_MAPPINGS_DIR=/etc/handoff/mappings \
    HANDOFF_CONNECTORS_DIR=/etc/handoff/connectors \
    HANDOFF_LOG__FORMAT=json
USER handoff
VOLUME ["/var/lib/handoff/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["handoff", "healthcheck", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["handoff"]
CMD ["serve"]
