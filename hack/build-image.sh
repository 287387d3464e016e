#!/usr/bin/env bash
# Build the papertrader image with docker, podman or buildah (the first that works), labelled with this checkout's
# revision. Where the python base image can be neither found locally nor pulled, it makes a stand-in for it from
# Debian with debootstrap (root only). Where this host's pip is set up for local wheels and indexes (an air-gapped
# machine), the build uses them too.
#
#   hack/build-image.sh                     # builds ghcr.io/papertrader/papertrader:<version>
#   IMAGE=registry.example/pt:dev hack/build-image.sh
#
# Environment (all optional):
#   IMAGE            image name and tag (default ghcr.io/papertrader/papertrader:<version in pyproject.toml>)
#   ENGINE           docker | podman | buildah (default: the first one found that works, in that order)
#   HOST_PIP         auto | yes | no: build with this host's pip find-links, local indexes and CA bundle
#                    (auto: when `pip config list` names a local find-links folder or file:// index)
#   TORCH_INDEX_URL  where torch comes from (default: the PyTorch CPU index, or the host's local index)
#   STRIP_BINARIES   1 | 0: strip debug symbols from shared libraries (needs a Debian mirror in the build)
#   DEBIAN_MIRROR    mirror for the stand-in base (default: the first one in /etc/apt/sources.list*)
# podman and buildah run with hack/containers.conf unless CONTAINERS_CONF is set.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

base=docker.io/library/python:3.11.9-slim-bookworm
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
image=${IMAGE:-ghcr.io/papertrader/papertrader:$version}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/hack/containers.conf}

say() { echo "build-image: $*" >&2; }
die() { say "$*"; exit 1; }

pick_engine() {
    if [[ -n ${ENGINE:-} ]]; then
        command -v "$ENGINE" >/dev/null || die "ENGINE=$ENGINE is not installed"
        echo "$ENGINE"; return
    fi
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; return; fi
    if command -v podman >/dev/null; then echo podman; return; fi
    if command -v buildah >/dev/null; then echo buildah; return; fi
    die "no container engine: install docker, podman or buildah (no docker daemon answered)"
}

have_image() {
    case $engine in
        docker) docker image inspect "$1" >/dev/null 2>&1 ;;
        podman) podman image exists "$1" ;;
        buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
    esac
}

debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m=$(grep -hoE '^(deb +|URIs: *)http[^ ]*debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -oE 'http[^ ]*' | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}

# A Debian bookworm rootfs with Python 3.11, imported under the base image's name (Debian's python is /usr/bin/python).
make_standin_base() {
    command -v debootstrap >/dev/null || die "cannot pull $base and debootstrap is not installed to make a stand-in"
    [[ $(id -u) == 0 ]] || die "cannot pull $base; making a stand-in with debootstrap needs root"
    local rootfs mirror
    rootfs=$(mktemp -d /tmp/papertrader-base.XXXXXX)
    mirror=$(debian_mirror)
    say "making a stand-in for $base from $mirror with debootstrap (about a minute)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$rootfs" "$mirror" >/dev/null
    # what python:*-slim leaves out as well: apt caches, documentation, manual pages, translations
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    # apt inside the build (binutils for strip) uses the same mirror
    echo "deb $mirror bookworm main" >"$rootfs/etc/apt/sources.list"
    tar --numeric-owner -C "$rootfs" -c . | case $engine in
        docker) docker import --change 'ENV LANG=C.UTF-8' - "$base" ;;
        podman) podman import --change 'ENV LANG=C.UTF-8' - "$base" ;;
        buildah) podman import --change 'ENV LANG=C.UTF-8' - "$base" ;;
    esac >/dev/null
    rm -rf "$rootfs"
}

ensure_base() {
    have_image "$base" && return
    say "pulling $base"
    case $engine in
        docker) timeout 120 docker pull -q "$base" >/dev/null 2>&1 ;;
        podman) timeout 120 podman pull -q "$base" >/dev/null 2>&1 ;;
        buildah) timeout 120 buildah pull -q "$base" >/dev/null 2>&1 ;;
    esac && return
    say "could not pull $base"
    make_standin_base
}

# This host's pip settings: "key=value" lines of `pip config list`, quotes removed.
pip_setting() {
    python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.$1='\(.*\)'$/\1/p" | tail -n1
}

revision() {
    local rev
    rev=$(git rev-parse HEAD 2>/dev/null) || { echo unknown; return; }
    [[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || rev+=-dirty
    echo "$rev"
}

rev=$(revision)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# the labels are also set with --label: buildah's layer cache reuses a LABEL layer whose build args changed
build_args=(--build-arg "VERSION=$version" --build-arg "REVISION=$rev" --build-arg "CREATED=$created"
            --label "org.opencontainers.image.revision=$rev" --label "org.opencontainers.image.created=$created"
            --build-arg "STRIP_BINARIES=${STRIP_BINARIES:-1}")
mounts=()

add_host_pip() {
    local find_links extra cert dir url index=""
    find_links=$(pip_setting find-links)
    extra=$(pip_setting extra-index-url)
    cert=$(pip_setting cert)
    if [[ ${HOST_PIP:-auto} == auto && ! -d $find_links && $extra != *file://* ]]; then return; fi
    say "using this host's pip sources: find-links=${find_links:-none} indexes=${extra:-none}"
    for dir in $find_links; do [[ -d $dir ]] && mounts+=(-v "$dir:$dir:ro"); done
    for url in $extra; do
        if [[ $url == file://* ]]; then
            dir=${url#file://}
            # an index's files may lie next to its simple/ folder: mount the parent
            mounts+=(-v "$(dirname "$dir"):$(dirname "$dir"):ro")
            [[ -n $index ]] || index=$url
        fi
    done
    [[ -f $cert ]] && mounts+=(-v "$cert:$cert:ro") && build_args+=(--build-arg "PIP_CERT=$cert")
    [[ -n $find_links ]] && build_args+=(--build-arg "PIP_FIND_LINKS=$find_links")
    [[ -n $extra ]] && build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")
    # torch itself comes from the find-links folder; its dependencies from the first local index
    [[ -n ${TORCH_INDEX_URL:-} || -z $index ]] || TORCH_INDEX_URL=$index
}

engine=$(pick_engine)
say "engine: $engine; image: $image"
ensure_base
[[ ${HOST_PIP:-auto} == no ]] || add_host_pip
[[ -z ${TORCH_INDEX_URL:-} ]] || build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
if [[ $engine == docker && ${#mounts[@]} -gt 0 ]]; then
    die "docker build cannot mount this host's pip folders; run with HOST_PIP=no (online) or ENGINE=podman"
fi

start=$(date +%s)
case $engine in
    docker) docker build --network host "${build_args[@]}" -t "$image" . ;;
    podman) podman build --network host --layers "${mounts[@]}" "${build_args[@]}" -t "$image" . ;;
    buildah) buildah build --network host --layers "${mounts[@]}" "${build_args[@]}" -t "$image" . ;;
esac
say "built $image in $(( $(date +%s) - start )) s"
