#!/usr/bin/env bash
# Builds what test/support/k8s-cluster.ts needs for a real Kubernetes test
# cluster, from Debian packages only (no GitHub, no container registry, no Go
# proxy): kube-apiserver, kube-controller-manager, kube-scheduler and kubelet
# 1.20.2 from Debian's `kubernetes` source package, plus a pause image and a
# busybox image as docker-archive tarballs. Everything lands in
#   ${PADDOCK_K8S_CACHE:-$HOME/.cache/paddock/k8s-1.20.2}/{bin/,pause.tar,busybox.tar}
# and the Debian source tree is unpacked and built in
#   ${PADDOCK_K8S_WORK:-$HOME/.cache/paddock/k8s-1.20.2-build}
# (outside the repository). Idempotent: whatever is already built is skipped;
# a run with everything in place only checks the Debian packages (about 1 s).
#
# Also installs, with apt and only when missing, the Debian packages the
# cluster runs on (etcd-server, containerd, runc, containernetworking-plugins,
# ...) and, if no kubectl is on PATH, Debian's kubernetes-client (kubectl 1.20.2).
#
# Usage: bash scripts/k8s-build.sh   (as root; a cold build takes a few minutes)
set -euo pipefail

K8S_VERSION=v1.20.2
PAUSE_TAG=localhost/paddock/pause:3.4
BUSYBOX_TAG=localhost/paddock/busybox:1.35
CACHE=${PADDOCK_K8S_CACHE:-$HOME/.cache/paddock/k8s-1.20.2}
WORK=${PADDOCK_K8S_WORK:-$HOME/.cache/paddock/k8s-1.20.2-build}
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

# What the cluster needs at run time (always checked) and what building needs
# (checked only when something has to be built).
RUNTIME_PACKAGES=(etcd-server etcd-client containerd runc containernetworking-plugins iproute2 util-linux)
BUILD_PACKAGES=(golang-go rsync jq dpkg-dev gcc libc6-dev busybox-static)

export DEBIAN_FRONTEND=noninteractive
started=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "k8s-build: $*" >&2; }
step_started=$started
step() {
  log "$1 ($(since "$step_started")s)"
  step_started=$EPOCHREALTIME
}

apt_updated=0
apt_update_once() {
  if [[ $apt_updated -eq 0 ]]; then
    apt-get update -q
    apt_updated=1
  fi
}

# ensure_packages PKG...: installs those that are not installed.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" != "installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then return 0; fi
  if [[ $EUID -ne 0 ]]; then
    echo "k8s-build: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  apt_update_once
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}

binaries_built() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$CACHE/bin/$b" ]] || return 1; done
}

# Debian's source tree of kubernetes, unpacked (and fetched) once under $WORK.
source_tree() {
  local tree
  tree=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' 2>/dev/null | sort | tail -n1)
  if [[ -n "$tree" && -f "$tree/.paddock-unpacked" ]]; then
    echo "$tree"
    return 0
  fi
  # deb-src entries from the mirror apt already uses (the deb822 sources file).
  if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    local src=/etc/apt/sources.list.d/debian.sources
    if [[ ! -f $src ]]; then
      echo "k8s-build: no deb-src entry and no $src to derive one from; add a deb-src line for Debian 12 (bookworm) by hand" >&2
      exit 1
    fi
    log "enabling deb-src from $src"
    sed 's/^Types: deb$/Types: deb-src/' "$src" >/etc/apt/sources.list.d/debian-src.sources
    apt_updated=0
  fi
  apt_update_once >&2
  rm -rf "$WORK"
  mkdir -p "$WORK"
  (cd "$WORK" && apt-get source -q kubernetes) >&2
  tree=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | sort | tail -n1)
  if [[ -z "$tree" ]]; then
    echo "k8s-build: apt-get source kubernetes left no kubernetes-* directory in $WORK" >&2
    exit 1
  fi
  touch "$tree/.paddock-unpacked"
  echo "$tree"
}

build_binaries() {
  local tree=$1
  mkdir -p "$tree/.go/src/k8s.io" "$WORK/home"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  local what=() b
  for b in "${BINARIES[@]}"; do what+=("cmd/$b"); done
  log "make WHAT=\"${what[*]}\" in $tree"
  (
    cd "$tree"
    env GOPATH="$tree/.go" GOPROXY=off GOFLAGS= HOME="$WORK/home" CGO_ENABLED=0 \
      KUBE_GIT_VERSION=$K8S_VERSION KUBE_GIT_TREE_STATE=clean \
      make WHAT="${what[*]}"
  )
  mkdir -p "$CACHE/bin"
  for b in "${BINARIES[@]}"; do
    install -m 0755 "$tree/_output/bin/$b" "$CACHE/bin/$b.tmp"
    mv -f "$CACHE/bin/$b.tmp" "$CACHE/bin/$b"
  done
}

# docker_archive OUT TAG ROOTFS CONFIG_JSON_FRAGMENT: writes a docker-archive
# tarball (manifest.json, config, one uncompressed layer) that
# `ctr images import` and `docker load` accept.
docker_archive() {
  local out=$1 tag=$2 rootfs=$3 config=$4
  local dir
  dir=$(mktemp -d)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$dir/layer.tar" .
  local layer_sha
  layer_sha=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  mkdir "$dir/$layer_sha"
  mv "$dir/layer.tar" "$dir/$layer_sha/layer.tar"
  jq -cn --arg diff "sha256:$layer_sha" --argjson config "$config" '{
      architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
      config: $config,
      rootfs: { type: "layers", diff_ids: [$diff] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "paddock scripts/k8s-build.sh" }]
    }' >"$dir/config.json"
  local config_sha
  config_sha=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mv "$dir/config.json" "$dir/$config_sha.json"
  jq -cn --arg config "$config_sha.json" --arg tag "$tag" --arg layer "$layer_sha/layer.tar" \
    '[{ Config: $config, RepoTags: [$tag], Layers: [$layer] }]' >"$dir/manifest.json"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$dir" \
    -cf "$out.tmp" manifest.json "$config_sha.json" "$layer_sha"
  mv -f "$out.tmp" "$out"
  rm -rf "$dir"
}

build_pause() {
  local tree=$1 rootfs
  rootfs=$(mktemp -d)
  gcc -Os -static -DVERSION=3.4-paddock -o "$rootfs/pause" "$tree/build/pause/linux/pause.c"
  strip "$rootfs/pause" 2>/dev/null || true
  docker_archive "$CACHE/pause.tar" "$PAUSE_TAG" "$rootfs" \
    '{"Entrypoint":["/pause"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}'
  rm -rf "$rootfs"
}

build_busybox() {
  local rootfs applet
  rootfs=$(mktemp -d)
  mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp" "$rootfs/home" \
    "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/var" "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/sbin"
  chmod 1777 "$rootfs/tmp"
  chmod 0700 "$rootfs/root"
  install -m 0755 /bin/busybox "$rootfs/bin/busybox"
  # One symlink per applet, where busybox itself says it lives (bin/sh, usr/bin/env, ...).
  while read -r applet; do
    [[ -z "$applet" || "$applet" == bin/busybox ]] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
  done < <(/bin/busybox --list-full)
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/home:/bin/false' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$rootfs/etc/group"
  docker_archive "$CACHE/busybox.tar" "$BUSYBOX_TAG" "$rootfs" \
    '{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}'
  rm -rf "$rootfs"
}

main() {
  mkdir -p "$CACHE"
  ensure_packages "${RUNTIME_PACKAGES[@]}"
  if ! command -v kubectl >/dev/null 2>&1; then
    log "no kubectl on PATH: installing Debian's kubernetes-client (kubectl 1.20.2)"
    ensure_packages kubernetes-client
  fi
  step "runtime packages checked"

  if binaries_built && [[ -s "$CACHE/pause.tar" && -s "$CACHE/busybox.tar" ]]; then
    log "everything is built in $CACHE; nothing to do (total $(since "$started")s)"
    return 0
  fi

  ensure_packages "${BUILD_PACKAGES[@]}"
  step "build packages checked"

  local tree=""
  if ! binaries_built || [[ ! -s "$CACHE/pause.tar" ]]; then
    tree=$(source_tree)
    step "source tree ready: $tree"
  fi
  if ! binaries_built; then
    build_binaries "$tree"
    step "built ${BINARIES[*]}"
  fi
  if [[ ! -s "$CACHE/pause.tar" ]]; then
    build_pause "$tree"
    step "built $CACHE/pause.tar ($PAUSE_TAG)"
  fi
  if [[ ! -s "$CACHE/busybox.tar" ]]; then
    build_busybox
    step "built $CACHE/busybox.tar ($BUSYBOX_TAG)"
  fi
  "$CACHE/bin/kube-apiserver" --version
  log "done in $(since "$started")s; binaries in $CACHE/bin"
}

main "$@"
