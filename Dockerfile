# Small static image: a musl build of the stowage binary on a distroless, non-root base.
#   docker build -t ghcr.io/stowage-io/stowage:0.1.0 .
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin stowage \
 && cp target/release/stowage /stowage

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /stowage /usr/local/bin/stowage
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stowage"]
