#!/usr/bin/env bash
# Builds both images the compose file needs WITHOUT pulling anything (no registry needed):
#   redraft:local        the static redraft binary (CGO_ENABLED=0) in an empty image
#   redraft-redis:local  this machine's redis-server/redis-cli with their libraries, FROM scratch
# Then: REDIS_IMAGE=redraft-redis:local docker-compose up -d   (see docs/docker.md)
set -euo pipefail
cd "$(dirname "$0")/.."
REDRAFT_IMAGE=${REDRAFT_IMAGE:-redraft:local}
REDIS_IMAGE=${REDIS_IMAGE:-redraft-redis:local}
GO=${GO:-go}

mkdir -p docker/build/data
echo "build-images: go build (static) -> docker/build/redraft"
CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" build -trimpath -ldflags="-s -w" -o docker/build/redraft ./cmd/redraft
echo "build-images: docker build -f docker/Dockerfile.local -> $REDRAFT_IMAGE"
docker build -q -f docker/Dockerfile.local -t "$REDRAFT_IMAGE" . >/dev/null
echo "build-images: built $REDRAFT_IMAGE"
if [ "$REDIS_IMAGE" != "redis:7" ] && [ "${SKIP_REDIS_IMAGE:-}" != 1 ]; then
  docker/build-redis-image.sh "$REDIS_IMAGE"
fi
