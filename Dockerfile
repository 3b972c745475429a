# syntax=docker/dockerfile:1
# Tailgate: both binaries in one small non-root image.
#   docker build -t tailgate:0.1.0 --build-arg TAILGATE_GIT_COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm tailgate:0.1.0 tailgate-gateway --version
# The image has no ENTRYPOINT: the container's command names the binary, as the
# Kubernetes manifests do (args: [tailgate-gateway, --config, …]).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The commit for --version and tailgate_build_info (.git is not in the build context).
ARG TAILGATE_GIT_COMMIT=unknown
ENV TAILGATE_GIT_COMMIT=${TAILGATE_GIT_COMMIT}
COPY . .
# The dist profile: fat LTO, one codegen unit (Cargo.toml), the build benchmarks measure.
RUN cargo build --profile dist --locked -p tailgate-router -p tailgate-gateway \
 && mkdir -p /out \
 && cp target/dist/tailgate-router target/dist/tailgate-gateway /out/

# glibc and CA roots, no shell, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG TAILGATE_GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="tailgate" \
      org.opencontainers.image.description="Tail-sampling gateway for OpenTelemetry traces: tailgate-router and tailgate-gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${TAILGATE_GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 4317 4318 13133 8888
ENTRYPOINT []
CMD ["tailgate-gateway", "--help"]
