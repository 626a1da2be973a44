# Multi-stage build: compile in the Rust image, run from a small Debian image as a
# non-root user. Static assets and templates are compiled into the binary.
# The default `bundled` feature compiles SQLite, libpq and OpenSSL into the binary
# (the rust image has the C compiler, make and perl that needs).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin oxidp && strip target/release/oxidp

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/oxidp --create-home oxidp
COPY --from=build /src/target/release/oxidp /usr/local/bin/oxidp
USER oxidp
WORKDIR /var/lib/oxidp
ENV OXIDP_BIND=0.0.0.0:8080 \
    OXIDP_DATA_DIR=/var/lib/oxidp/data \
    OXIDP_LOG__FORMAT=json
VOLUME ["/var/lib/oxidp/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["oxidp"]
CMD ["serve"]
