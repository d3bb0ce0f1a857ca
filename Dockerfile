# syntax=docker/dockerfile:1
#
# One parameterised image for every skao-staging binary.
#
#   docker build --build-arg SERVICE=gateway        -t skao-staging/gateway:dev .
#   docker build --build-arg SERVICE=stager         -t skao-staging/stager:dev .
#   docker build --build-arg SERVICE=jupyter-bridge -t skao-staging/jupyter-bridge:dev .
#   docker build --build-arg SERVICE=audit          -t skao-staging/audit:dev .
#   docker build --build-arg SERVICE=stagingd       -t skao-staging/stagingd:dev .
#
# The binary is static (CGO_ENABLED=0; the audit's SQLite driver is pure Go)
# and runs as the distroless "nonroot" user 65532:65532. The entrypoint is
# always /usr/local/bin/skao-staging; configuration is STAGING_* variables.
#
# FILE_CAPS (stager with ownership mapping only, see docs/deployment.md):
#   docker build --build-arg SERVICE=stager --build-arg FILE_CAPS=cap_chown,cap_fowner+ep \
#     -t skao-staging/stager:dev-chown .
# gives the binary file capabilities, so that the non-root process really
# holds CAP_CHOWN and CAP_FOWNER when the container is granted them. Such an
# image must run with those capabilities and allowPrivilegeEscalation: true
# (the stager chart does this when ownership mapping is on); leave FILE_CAPS
# empty for every other image.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
ARG SERVICE=gateway
ARG FILE_CAPS=
# VERSION becomes service.version on the traces (--build-arg VERSION=$(git describe)).
ARG VERSION=dev
WORKDIR /src

# Module downloads first, so source edits do not invalidate them.
COPY go.work go.work.sum ./
COPY libs/go.mod libs/go.sum libs/
COPY cmd/stagingd/go.mod cmd/stagingd/go.sum cmd/stagingd/
COPY cmd/stagectl/go.mod cmd/stagectl/go.sum cmd/stagectl/
COPY services/gateway/go.mod services/gateway/go.sum services/gateway/
COPY services/stager/go.mod services/stager/go.sum services/stager/
COPY services/jupyter-bridge/go.mod services/jupyter-bridge/go.sum services/jupyter-bridge/
COPY services/audit/go.mod services/audit/go.sum services/audit/
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    case "$SERVICE" in \
      gateway|stager|jupyter-bridge|audit) pkg="./services/$SERVICE/cmd/$SERVICE" ;; \
      stagingd) pkg=./cmd/stagingd ;; \
      *) echo "SERVICE must be gateway, stager, jupyter-bridge, audit or stagingd, not '$SERVICE'" >&2; exit 1 ;; \
    esac; \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/skao/skao-staging/libs/telemetry.version=$VERSION" -o /out/skao-staging "$pkg"; \
    if [ -n "$FILE_CAPS" ]; then \
      apt-get update && apt-get install -y --no-install-recommends libcap2-bin && \
      setcap "$FILE_CAPS" /out/skao-staging && getcap /out/skao-staging; \
    fi

FROM gcr.io/distroless/static:nonroot
ARG SERVICE=gateway
LABEL org.opencontainers.image.title="skao-staging-${SERVICE}" \
      org.opencontainers.image.description="SKAO data staging service: ${SERVICE}" \
      org.opencontainers.image.source="https://github.com/skao/skao-staging"
COPY --from=build /out/skao-staging /usr/local/bin/skao-staging
# 8080: gateway REST API (and stagingd); 8081: stager download links;
# 9090: /healthz, /readyz, /metrics of the standalone services.
EXPOSE 8080 8081 9090
WORKDIR /home/nonroot
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/skao-staging"]
