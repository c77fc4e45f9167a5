#!/usr/bin/env bash
# Installs what the real-BuildKit tests need: the docker client, runc, a registry, image tools (Debian), buildx,
# buildkitd, the Compose plugin and a Docker Engine (dockerd, containerd: install-engine.sh), built from the Go
# module proxy. Idempotent: binaries are kept in a cache directory
# outside the checkout so a reused machine does not rebuild them.
# --packages-only: only Debian's packages (what the test stand-ins need), not the Go builds.
set -euo pipefail

BUILDX_VERSION=${BUILDX_VERSION:-v0.36.1}
BUILDKIT_VERSION=${BUILDKIT_VERSION:-v0.32.2}
COMPOSE_VERSION=${COMPOSE_VERSION:-v2.40.3}
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
TOOLS=${LLAMA_BAKE_TOOLS:-$HOME/.cache/llama-bake/tools}
mkdir -p "$TOOLS"

need_apt=()
# debootstrap makes the Debian stand-in for ubuntu:24.04 (the real-image tier).
# qemu-user-static: arm64 emulation for the two-platform builds (binfmt_misc, registered by the tests).
# gcc and libc6-dev: the CUDA stand-in's driver stub (libcuda.so) is compiled from cuda.h (tests/cuda_standins.py).
for pair in runc:runc docker-registry:docker-registry skopeo:skopeo umoci:umoci debootstrap:debootstrap \
        qemu-aarch64-static:qemu-user-static gcc:gcc; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_apt+=("$pkg")
done
# The docker client, for buildx and Compose to plug into: Debian's docker.io when none is on PATH
# (its engine is never started; BuildKit runs as buildkitd).
command -v docker >/dev/null 2>&1 || need_apt+=(docker.io)
# The busybox stand-in image is FROM scratch: only a static busybox runs there, so ask for the package.
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
dpkg -s libc6-dev >/dev/null 2>&1 || need_apt+=(libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install-tools: apt-get install ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# A static arm64 busybox for the linux/arm64 stand-in image: Debian's busybox-static:arm64, unpacked.
if [ ! -x "$TOOLS/busybox-arm64" ]; then
    echo "install-tools: fetching busybox-static:arm64" >&2
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq
    work=$(mktemp -d) && chmod 755 "$work"  # apt downloads as _apt
    (cd "$work" && apt-get download -qq busybox-static:arm64 >/dev/null && dpkg-deb -x ./*.deb root)
    install -m 0755 "$work/root/bin/busybox" "$TOOLS/busybox-arm64"
    rm -rf "$work"
fi

[ "${1:-}" = --packages-only ] && exit 0

stamp() { "$1" --version 2>/dev/null | head -n1; }
# The module's directory in Go's module cache: buildkit's and compose's go.mod have exclude directives that
# `go install pkg@version` refuses, so they are built inside the downloaded module (the main module).
built_inside() {
    go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}
# -s -w: no symbol table or DWARF (the binaries are run, never debugged), which shortens every link.
# -X stamps the version that `go install` leaves as v0.0.0+unknown (doctor and the checks below read it).
build_buildx() {
    echo "building buildx $BUILDX_VERSION"
    GOBIN=$TOOLS go install -ldflags "-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
        "github.com/docker/buildx/cmd/buildx@$BUILDX_VERSION"
}
build_buildkitd() {
    local dir
    echo "building buildkitd $BUILDKIT_VERSION"
    dir=$(built_inside "github.com/moby/buildkit@$BUILDKIT_VERSION")
    # Only buildkitd: nothing here runs buildctl.
    (cd "$dir" && go build -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
        -o "$TOOLS/" ./cmd/buildkitd)
}
build_compose() {
    local dir
    echo "building docker compose $COMPOSE_VERSION"
    dir=$(built_inside "github.com/docker/compose/v2@$COMPOSE_VERSION")
    (cd "$dir" && go build -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
        -o "$TOOLS/docker-compose" ./cmd)
}
build_actionlint() {
    echo "building actionlint $ACTIONLINT_VERSION"
    GOBIN=$TOOLS go install -ldflags "-s -w -X github.com/rhysd/actionlint.version=${ACTIONLINT_VERSION#v}" \
        "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
}
# The engine tier's Docker Engine (dockerd, containerd): its own script, which checks its own versions.
build_engine() {
    LLAMA_BAKE_TOOLS=$TOOLS bash "$(dirname "$0")/install-engine.sh"
}

# What is missing builds TOOL_JOBS at a time (default 2), the longest first: on a new machine one build's
# module downloads overlap another's compile. A reused machine starts none of them (the engine's script only
# checks its versions).
TOOL_JOBS=${LLAMA_BAKE_TOOL_JOBS:-2}
running=0
failed=()
started=()
finish_one() {
    local status=0
    wait -n || status=$?
    running=$((running - 1))
    [ "$status" -eq 0 ] || failed+=("$status")
}
start() {  # start NAME: build_NAME in the background, each line of its output prefixed with NAME
    while [ "$running" -ge "$TOOL_JOBS" ]; do finish_one; done
    (set -o pipefail; "build_$1" 2>&1 | sed -u "s/^/install-tools [$1]: /" >&2) &
    running=$((running + 1))
    started+=("$1")
}

start engine
"$TOOLS/docker-compose" version 2>/dev/null | grep -q "$COMPOSE_VERSION" || start compose
stamp "$TOOLS/buildkitd" | grep -q "$BUILDKIT_VERSION" || start buildkitd
"$TOOLS/buildx" version 2>/dev/null | grep -q "$BUILDX_VERSION" || start buildx
"$TOOLS/actionlint" -version 2>/dev/null | grep -q "${ACTIONLINT_VERSION#v}" || start actionlint
while [ "$running" -gt 0 ]; do finish_one; done
if [ ${#failed[@]} -gt 0 ]; then
    echo "install-tools: ${#failed[@]} of the builds (${started[*]}) failed: see the lines above" >&2
    exit 1
fi

mkdir -p "$HOME/.docker/cli-plugins"
for pair in buildx:docker-buildx docker-compose:docker-compose; do
    built=$TOOLS/${pair%%:*}; plugin=$HOME/.docker/cli-plugins/${pair#*:}
    cmp -s "$built" "$plugin" || cp "$built" "$plugin"
done
echo "install-tools: ok ($TOOLS)" >&2
