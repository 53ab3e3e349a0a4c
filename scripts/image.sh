#!/usr/bin/env bash
# Build Tailor's image from the repository's Dockerfile with buildah, on a machine without Docker
# Hub: the base images are made here from Debian's own packages.
#
#   scripts/image.sh build         the Debian bases (cached), then the image IMAGE:TAG
#   scripts/image.sh push          IMAGE:TAG to REGISTRY (e.g. 127.0.0.1:5000/tailor-dev/tailor:TAG)
#   scripts/image.sh bases         only the bases; prints the --build-arg lines for the Dockerfile
#   scripts/image.sh tools         only install buildah, podman and mmdebstrap (Debian) if missing
#   scripts/image.sh run-flags     podman run flags: the chart's restricted settings, and the
#                                  limits this machine needs (see "Running" below)
#
# Variables (`make image` and `make image-push` pass them through):
#   IMAGE     repository of the image (default ghcr.io/tailor-dev/tailor, the chart's default)
#   TAG       its tag (default: Chart.yaml's appVersion, the tag the chart and the CRD default to)
#   BASES     debian (default): bases built here by mmdebstrap; public: the Dockerfile's defaults
#             (python:3.11-slim-bookworm, rust:1-slim-bookworm from Docker Hub)
#   REGISTRY  where `push` sends the image: REGISTRY replaces IMAGE's registry part
#   TLS_VERIFY  for `push`; default false for localhost/127.0.0.1 (a local http registry), else true
#
# The bases. The Dockerfile takes PYTHON_IMAGE and RUST_IMAGE; the Debian equivalents are:
#   localhost/tailor-bases/python:3.11-bookworm  Debian's python3 (3.11.2) with venv and
#       python-is-python3 (the Dockerfile runs `python`; the public image's is /usr/local/bin/python,
#       here /usr/bin/python), ca-certificates, netbase, tzdata, as the public slim image has.
#   localhost/tailor-bases/rust:bookworm  Debian's rustc-web and cargo-web (1.96 from
#       bookworm-security) with gcc and libc6-dev. Not Debian's `rustc`/`cargo` packages: they are
#       1.63, and native/ needs more: Cargo.lock version 4 needs cargo >= 1.78, indexmap 2.14
#       (edition 2024) rust >= 1.85, PyO3 0.27 rust >= 1.74. rustc-web is Debian's newer toolchain
#       for bookworm (made for building browsers), installed as /usr/bin/rustc and /usr/bin/cargo.
# Both are minbase (essential + required + apt) without man pages, docs and locales, as Debian's
# slim images. Each is built once per recipe (the lists and options below): an image whose
# dev.tailor.base-recipe label matches is kept. REFRESH=1 rebuilds them (e.g. for security updates).
#
# What works on this machine (a gVisor sandbox, cgroup v1, root, Debian bookworm's buildah 1.28
# and podman 4.3), found by trying:
#   - storage: the default driver, overlay, in /var/lib/containers/storage, works for build and run
#     (no need for vfs); mmdebstrap in root mode works.
#   - `buildah bud --isolation chroot`: RUN steps run (oci isolation works too; chroot needs no
#     runtime). --layers, so a rebuild reuses every unchanged step.
#   - TLS: this machine's HTTPS goes through a proxy whose CA is in the host's trust store only
#     (/usr/local/share/ca-certificates). The host's bundle is bind-mounted read-only over the
#     base's during RUN steps (pip, cargo and curl read it there), so the build trusts what the host
#     trusts and the image keeps the base's own bundle: nothing of this machine is baked in.
#   - heredocs in the Dockerfile: buildah 1.28 does not read them (it took `import tomllib` for an
#     instruction), so the Dockerfile has none.
# Running (podman run): podman asks runc for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576, above the
# sandbox's hard limits, and runc fails with "error setting rlimit type 7: operation not permitted"
# (type 6 for NPROC); `--ulimit host` fails the same way. Explicit limits within the hard ones work:
# `run-flags` prints them. Only limits above the hard ones fail; whether the real node's containerd
# asks for any is not checked here.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-ghcr.io/tailor-dev/tailor}
TAG=${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' Chart.yaml)}
BASES=${BASES:-debian}

SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PYTHON_BASE=localhost/tailor-bases/python:3.11-bookworm
RUST_BASE=localhost/tailor-bases/rust:bookworm
python_packages=(python3 python3-venv python-is-python3 ca-certificates netbase tzdata)
rust_packages=(rustc-web cargo-web gcc libc6-dev ca-certificates)
# As Debian's slim images: no man pages, docs (but their copyright files), info or locales; written
# into the base's dpkg configuration, so a later apt-get install in the Dockerfile keeps to it too.
dpkg_options=(
  'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*'
  'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright'
)
# Merged /usr made by mmdebstrap's own hook, as in Debian's images; without it bookworm's
# init-system-helpers pulls in usrmerge, and with it perl (~50 MB).
hooks=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
base_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

sources=(
  "deb $DEBIAN_MIRROR $SUITE main"
  "deb $DEBIAN_MIRROR $SUITE-updates main"
  "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
)

log() { echo "image: $*" >&2; }

ensure_tools() {
  local missing=() pkg
  for pkg in buildah podman mmdebstrap; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  log "installing ${missing[*]} (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  # The lock timeout: another set-up step may be running apt at the same time.
  "${sudo[@]}" apt-get update -qq -o DPkg::Lock::Timeout=600
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
}

# recipe NAME PACKAGES... -> a hash of everything that decides the base's contents.
recipe() {
  printf '%s\n' "$SUITE" "${sources[@]}" "${dpkg_options[@]}" "${hooks[@]}" "${base_env[@]}" "$@" \
    | sha256sum | cut -c1-16
}

# make_base NAME CMD PACKAGES...: build NAME from Debian with mmdebstrap unless one of this recipe exists.
make_base() {
  local name=$1 cmd=$2
  shift 2
  local hash have
  hash=$(recipe "$name" "$cmd" "$@")
  have=$(podman image inspect --format '{{index .Labels "dev.tailor.base-recipe"}}' "$name" 2>/dev/null || true)
  if [ "$have" = "$hash" ] && [ "${REFRESH:-0}" != 1 ]; then
    log "$name is up to date (recipe $hash)"
    return 0
  fi
  log "building $name from Debian $SUITE: $*"
  local started=$SECONDS options=() change=() item old_id mmlog
  old_id=$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
  for item in "${dpkg_options[@]}"; do options+=("--dpkgopt=$item"); done
  for item in "${base_env[@]}"; do change+=(--change "ENV $item"); done
  mmlog=$(mktemp)
  # The tarball streams from mmdebstrap into podman's storage; nothing is left on disk.
  if ! mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "$*")" "${options[@]}" "${hooks[@]}" \
      "$SUITE" - "${sources[@]}" 2> "$mmlog" \
    | podman import --quiet "${change[@]}" --change "CMD $cmd" \
        --change "LABEL dev.tailor.base-recipe=$hash" - "$name" > /dev/null; then
    cat "$mmlog" >&2
    rm -f "$mmlog"
    log "could not build $name (mmdebstrap's output above)"
    exit 1
  fi
  rm -f "$mmlog"
  # The base it replaces, unless an image built on it still holds it.
  if [ -n "$old_id" ]; then podman rmi "$old_id" > /dev/null 2>&1 || true; fi
  log "$name built in $((SECONDS - started)) s"
}

make_bases() {
  make_base "$PYTHON_BASE" '["python3"]' "${python_packages[@]}"
  make_base "$RUST_BASE" '["bash"]' "${rust_packages[@]}"
}

# `podman run` flags for running the image as the chart's pods run (templates/deployment.yaml,
# operator/tailor_operator/builders.py): user 10001, read-only root, /tmp the only writable path
# (the pods' 64Mi emptyDir), no capabilities, no privilege escalation, podman's default seccomp
# profile (RuntimeDefault). Then the limits this machine needs (see "Running" above).
run_flags() {
  echo "--user 10001:10001 --read-only --tmpfs /tmp:rw,size=64m,mode=1777 --cap-drop ALL" \
    "--security-opt no-new-privileges" \
    "--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=32768:32768"
}

build() {
  local args=()
  case "$BASES" in
    debian)
      make_bases
      args+=(--build-arg "PYTHON_IMAGE=$PYTHON_BASE" --build-arg "RUST_IMAGE=$RUST_BASE")
      ;;
    public)  # fully qualified: buildah does not guess a registry for short names
      args+=(--build-arg PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm
             --build-arg RUST_IMAGE=docker.io/library/rust:1-slim-bookworm)
      ;;
    *) log "BASES must be debian or public, not '$BASES'"; exit 2 ;;
  esac
  if [ -f "$CA_BUNDLE" ]; then
    args+=(--volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro")
  fi
  log "building $IMAGE:$TAG (bases: $BASES)"
  local started=$SECONDS
  buildah bud --quiet --layers --isolation chroot --file Dockerfile --tag "$IMAGE:$TAG" "${args[@]}" .
  log "built $IMAGE:$TAG in $((SECONDS - started)) s"
  prune_old_builds "${args[@]}"
}

# Every build whose code changed leaves its predecessor's layers behind (~0.4 GB each), so storage
# grows without end on a machine that builds on every test run. Once enough untagged images pile up,
# the stages the final image does not descend from (native: the Rust build; build: the installed
# dependencies) are tagged as localhost/tailor-cache/<stage> (a cached rebuild of each, seconds), so
# that `podman image prune`, which keeps every ancestor of a tagged image, keeps the caches of what
# was just built and removes the rest.
prune_old_builds() {
  local dangling stage
  dangling=$(podman images --filter dangling=true --quiet | wc -l)
  [ "$dangling" -lt 10 ] && return 0
  for stage in native build; do
    buildah bud --quiet --layers --isolation chroot --file Dockerfile --target "$stage" \
      --tag "localhost/tailor-cache/$stage:latest" "$@" . > /dev/null
  done
  podman image prune --force > /dev/null
  log "removed the layers of $dangling earlier builds (podman image prune)"
}

push() {
  if [ -z "${REGISTRY:-}" ]; then
    log "push needs REGISTRY (e.g. make image-push REGISTRY=127.0.0.1:5000)"
    exit 2
  fi
  # IMAGE without its registry (ghcr.io/tailor-dev/tailor -> tailor-dev/tailor); as Docker reads a
  # reference, the first part names a registry only with a dot or a colon in it, or as localhost.
  local path=$IMAGE first=${IMAGE%%/*}
  if [ "$first" != "$IMAGE" ] && { [[ $first == *[.:]* ]] || [ "$first" = localhost ]; }; then
    path=${IMAGE#*/}
  fi
  local destination="$REGISTRY/$path:$TAG" verify=${TLS_VERIFY:-}
  if [ -z "$verify" ]; then
    case "$REGISTRY" in
      localhost|localhost:*|127.*|'[::1]'*) verify=false ;;
      *) verify=true ;;
    esac
  fi
  local digest_file
  digest_file=$(mktemp)
  buildah push --quiet --tls-verify="$verify" --digestfile "$digest_file" "$IMAGE:$TAG" "docker://$destination"
  log "pushed $destination@$(cat "$digest_file")"
  rm -f "$digest_file"
}

case "${1:-build}" in
  tools) ensure_tools ;;
  bases)
    ensure_tools
    make_bases
    echo "--build-arg PYTHON_IMAGE=$PYTHON_BASE --build-arg RUST_IMAGE=$RUST_BASE"
    ;;
  build) ensure_tools; build ;;
  push) ensure_tools; push ;;
  run-flags) run_flags ;;
  *) log "unknown command '$1' (build, push, bases, tools, run-flags)"; exit 2 ;;
esac
