#!/usr/bin/env bash
# Builds a Redis image WITHOUT pulling anything: this machine's redis-server and redis-cli, every
# shared library ldd lists for them and the dynamic loader are copied into a build context at
# their own paths, and the image is built FROM scratch. For machines with no registry access.
#
#   docker/build-redis-image.sh [TAG]        # default tag: redraft-redis:local
#
# The image runs like the official one for compose's purposes: `redis-server ...` and
# `redis-cli ping` are on PATH, the working directory is /data. With a registry, use redis:7.
set -euo pipefail
tag=${1:-redraft-redis:local}
server=${REDIS_SERVER_BIN:-$(command -v redis-server || true)}
cli=${REDIS_CLI_BIN:-$(command -v redis-cli || true)}
[ -x "$server" ] || { echo "build-redis-image: no redis-server on this machine (apt-get install redis-server, or set REDIS_SERVER_BIN)" >&2; exit 1; }
[ -x "$cli" ] || { echo "build-redis-image: no redis-cli on this machine (apt-get install redis-tools, or set REDIS_CLI_BIN)" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/root

copy() { # copy PATH: the file (symlinks followed) at the same path under the context's root
  mkdir -p "$root$(dirname "$1")"
  cp -L "$1" "$root$1"
}
copy_with_libs() { # copy BIN to /usr/bin and every library ldd names, loader included
  local bin=$1 dest=/usr/bin/$(basename "$1")
  mkdir -p "$root/usr/bin"
  cp -L "$bin" "$root$dest"
  # "libx.so => /lib/.../libx.so (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
    while read -r lib; do [ -e "$root$lib" ] || copy "$lib"; done
}
copy_with_libs "$server"
copy_with_libs "$cli"
mkdir -p "$root/data" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
# glibc's resolver: files, then DNS (compose's service names come from Docker's DNS).
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"

cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/bin
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
DOCKERFILE

echo "build-redis-image: $("$server" --version | cut -d' ' -f1-3) from $server -> $tag"
docker build -q -t "$tag" "$ctx" >/dev/null
docker run --rm "$tag" redis-server --version >/dev/null || { echo "build-redis-image: $tag does not run redis-server" >&2; exit 1; }
echo "build-redis-image: built $tag"
