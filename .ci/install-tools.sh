#!/usr/bin/env bash
# Installs what the real-BuildKit tests need: runc, a registry, image tools (Debian), buildx and
# buildkitd (built from the Go module proxy). Idempotent: binaries are kept in a cache directory
# outside the checkout so a reused machine does not rebuild them.
set -euo pipefail

BUILDX_VERSION=${BUILDX_VERSION:-v0.36.1}
BUILDKIT_VERSION=${BUILDKIT_VERSION:-v0.32.2}
TOOLS=${LLAMA_BAKE_TOOLS:-$HOME/.cache/llama-bake/tools}
mkdir -p "$TOOLS"

need_apt=()
# debootstrap makes the Debian stand-in for ubuntu:24.04 (the real-image tier).
for pair in runc:runc docker-registry:docker-registry skopeo:skopeo umoci:umoci debootstrap:debootstrap; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need_apt+=("$pkg")
done
# The busybox stand-in image is FROM scratch: only a static busybox runs there, so ask for the package.
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install-tools: apt-get install ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp() { "$1" --version 2>/dev/null | head -n1; }

if ! "$TOOLS/buildx" version 2>/dev/null | grep -q "$BUILDX_VERSION"; then
    echo "install-tools: building buildx $BUILDX_VERSION" >&2
    # -X stamps the version that `go install` leaves as v0.0.0+unknown (doctor and the check above read it).
    GOBIN=$TOOLS go install -ldflags "-X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
        "github.com/docker/buildx/cmd/buildx@$BUILDX_VERSION"
fi
if ! stamp "$TOOLS/buildkitd" | grep -q "$BUILDKIT_VERSION"; then
    echo "install-tools: building buildkitd $BUILDKIT_VERSION" >&2
    # buildkit's go.mod has exclude directives that `go install pkg@version` refuses;
    # building inside the downloaded module makes it the main module.
    dir=$(go mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    (cd "$dir" && go build -ldflags "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
        -o "$TOOLS/" ./cmd/buildkitd ./cmd/buildctl)
fi

mkdir -p "$HOME/.docker/cli-plugins"
if ! cmp -s "$TOOLS/buildx" "$HOME/.docker/cli-plugins/docker-buildx"; then
    cp "$TOOLS/buildx" "$HOME/.docker/cli-plugins/docker-buildx"
fi
echo "install-tools: ok ($TOOLS)" >&2
