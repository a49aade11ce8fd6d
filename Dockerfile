# redraft image, built from source (needs a registry: golang for the build, nothing for the
# runtime, which is FROM scratch).
#
#   docker build -t redraft:local .
#   docker compose up -d --build          # docker-compose.yml uses this file by default
#
# With no registry, build the static binary on the host and use docker/Dockerfile.local instead
# (docker/build-images.sh does both images that way; see docs/docker.md).
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/redraft ./cmd/redraft && mkdir -p /out/data

FROM scratch
COPY --from=build /out/redraft /redraft
COPY --from=build /out/data /data
# RESP, peer (Raft + node RPC, the one port to open between sites), admin HTTP
EXPOSE 6380 7380 8380
VOLUME /data
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s CMD ["/redraft", "--admin", "127.0.0.1:8380", "health"]
ENTRYPOINT ["/redraft"]
CMD ["--help"]
