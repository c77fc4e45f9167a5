#!/usr/bin/env bash
# Builds a real Docker Engine for the engine tier: dockerd and docker-proxy (moby v28.5.2) and containerd with its
# runc shim (v2.1.4), from the Go module proxy. About 12 minutes on 2 cores, once: the binaries are kept beside the
# other tools, outside the checkout, and rebuilt only when missing or of another version. Linked without symbol
# table or DWARF (-s -w), as install-tools.sh links the others.
set -euo pipefail

DOCKERD_VERSION=${DOCKERD_VERSION:-v28.5.2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.1.4}
TOOLS=${LLAMA_BAKE_TOOLS:-$HOME/.cache/llama-bake/tools}
mkdir -p "$TOOLS"

module_dir() {
    go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

if ! "$TOOLS/dockerd" --version 2>/dev/null | grep -q "${DOCKERD_VERSION#v}" || [ ! -x "$TOOLS/docker-proxy" ]; then
    echo "install-engine: building dockerd $DOCKERD_VERSION" >&2
    work=$(mktemp -d)
    src=$(module_dir "github.com/docker/docker@$DOCKERD_VERSION+incompatible")
    cp -r "$src" "$work/moby" && chmod -R u+w "$work/moby"
    # The module zip carries neither vendor/ nor a go.mod: the vendoring manifest is the module's go.mod.
    (cd "$work/moby" && cp vendor.mod go.mod && cp vendor.sum go.sum &&
        go build -mod=mod -tags "netgo osusergo exclude_graphdriver_btrfs" \
            -ldflags "-s -w -X github.com/docker/docker/dockerversion.Version=${DOCKERD_VERSION#v}" \
            -o "$TOOLS/" ./cmd/dockerd ./cmd/docker-proxy)
    rm -rf "$work"
fi

if ! "$TOOLS/containerd" --version 2>/dev/null | grep -q "$CONTAINERD_VERSION" || [ ! -x "$TOOLS/containerd-shim-runc-v2" ]; then
    echo "install-engine: building containerd $CONTAINERD_VERSION" >&2
    work=$(mktemp -d)
    src=$(module_dir "github.com/containerd/containerd/v2@$CONTAINERD_VERSION")
    cp -r "$src" "$work/containerd" && chmod -R u+w "$work/containerd"
    # Its zip has a partial vendor/: resolve modules instead.
    (cd "$work/containerd" && go build -mod=mod \
        -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
        -o "$TOOLS/" ./cmd/containerd ./cmd/containerd-shim-runc-v2)
    rm -rf "$work"
fi
echo "install-engine: ok ($TOOLS)" >&2
