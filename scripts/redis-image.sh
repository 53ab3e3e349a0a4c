#!/usr/bin/env bash
# A Redis image for the managed Redis of a stack on the local real node (`tailor dev up --node real`),
# where Docker Hub's redis image cannot be pulled: Debian bookworm's redis-server, nothing else.
#
#   scripts/redis-image.sh build   the image IMAGE:TAG (cached: kept while its recipe is unchanged)
#   scripts/redis-image.sh push    build, then push to REGISTRY/<IMAGE's path>:TAG (plain http on loopback)
#   scripts/redis-image.sh ref     print the reference pods use: REGISTRY/<IMAGE's path>:TAG
#
# Variables: IMAGE (default localhost/tailor-dev/redis), TAG (default 7.0-bookworm: Debian's 7.0.15),
# REGISTRY (for push/ref; `tailor dev up --node real` prints the stack's). A stack then takes it as
# `--set stack.spec.redis.image=$(scripts/redis-image.sh ref)` (docs/install.md, "Trying it locally").
#
# As the official image does for the operator's StatefulSet (operator/tailor_operator/builders.py):
# `redis-server` on PATH, runs as any non-root user (the pods run as 999) on a read-only root
# filesystem, writes only to /data (the volume). minbase, no docs, man pages or locales, as
# scripts/image.sh makes its bases; mmdebstrap and podman come from there (`scripts/image.sh tools`).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/tailor-dev/redis}
TAG=${TAG:-7.0-bookworm}
SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
packages=(redis-server)
sources=(
  "deb $DEBIAN_MIRROR $SUITE main"
  "deb $DEBIAN_MIRROR $SUITE-updates main"
  "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
)
dpkg_options=(
  'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*'
  'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright'
)

log() { echo "redis-image: $*" >&2; }

# The registry's path of IMAGE: without its registry part (localhost/tailor-dev/redis -> tailor-dev/redis).
image_path() {
  local first=${IMAGE%%/*}
  if [ "$first" != "$IMAGE" ] && { [[ $first == *[.:]* ]] || [ "$first" = localhost ]; }; then
    echo "${IMAGE#*/}"
  else
    echo "$IMAGE"
  fi
}

build() {
  bash scripts/image.sh tools
  local hash have
  hash=$(printf '%s\n' "$SUITE" "${sources[@]}" "${dpkg_options[@]}" "${packages[@]}" | sha256sum | cut -c1-16)
  have=$(podman image inspect --format '{{index .Labels "dev.tailor.redis-recipe"}}' "$IMAGE:$TAG" 2>/dev/null || true)
  if [ "$have" = "$hash" ] && [ "${REFRESH:-0}" != 1 ]; then
    log "$IMAGE:$TAG is up to date (recipe $hash)"
    return 0
  fi
  log "building $IMAGE:$TAG from Debian $SUITE: ${packages[*]}"
  local started=$SECONDS options=() mmlog
  for item in "${dpkg_options[@]}"; do options+=("--dpkgopt=$item"); done
  mmlog=$(mktemp)
  if ! mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" "${options[@]}" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "$SUITE" - "${sources[@]}" 2> "$mmlog" \
    | podman import --quiet --change 'CMD ["redis-server"]' --change "USER 999:999" \
        --change "LABEL dev.tailor.redis-recipe=$hash" - "$IMAGE:$TAG" > /dev/null; then
    cat "$mmlog" >&2
    rm -f "$mmlog"
    log "could not build $IMAGE:$TAG (mmdebstrap's output above)"
    exit 1
  fi
  rm -f "$mmlog"
  log "built $IMAGE:$TAG in $((SECONDS - started)) s"
}

need_registry() {
  if [ -z "${REGISTRY:-}" ]; then
    log "set REGISTRY (the stack's registry, e.g. 127.0.0.1:5000)"
    exit 2
  fi
}

case "${1:-build}" in
  build) build ;;
  push)
    need_registry
    build
    destination="$REGISTRY/$(image_path):$TAG"
    case "$REGISTRY" in localhost|localhost:*|127.*) verify=false ;; *) verify=true ;; esac
    buildah push --quiet --tls-verify="${TLS_VERIFY:-$verify}" "$IMAGE:$TAG" "docker://$destination"
    log "pushed $destination"
    ;;
  ref) need_registry; echo "$REGISTRY/$(image_path):$TAG" ;;
  *) log "unknown command '$1' (build, push, ref)"; exit 2 ;;
esac
