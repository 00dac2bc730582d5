#!/usr/bin/env bash
# Installs what the tests and the demo run for real: dockerd (docker.io), the Distribution registry
# (docker-registry), containerd with ctr (the containerd client tests), skopeo and podman (the registries.conf
# tests), rootlesskit (a rootless dockerd will not start without its rootlesskit-docker-proxy), zstd (what
# @actions/cache compresses with on hosted runners), and for the tests that stand Docker Hub's real names up in a
# network namespace, iproute2, openssl and util-linux; shellcheck for test/lint-workflows.sh. Idempotent.
set -euo pipefail
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-registry >/dev/null || missing+=(docker-registry)
{ command -v containerd && command -v ctr; } >/dev/null || missing+=(containerd)
command -v zstd >/dev/null || missing+=(zstd)
command -v tar >/dev/null || missing+=(tar)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v podman >/dev/null || missing+=(podman)
command -v rootlesskit-docker-proxy >/dev/null || missing+=(rootlesskit)
if [ ${#missing[@]} -gt 0 ]; then
  echo "prerequisites: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Under systemd (a hosted runner), installing docker-registry also enables and starts its docker-registry.service,
  # a registry on :5000 that no test uses (they run their own, on ports the kernel hands out): stop what we started.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now docker-registry.service
  fi
fi
[ -d node_modules ] || { echo "prerequisites: node_modules is missing; run npm ci first" >&2; exit 1; }
for tool in dockerd docker docker-registry containerd ctr zstd ip openssl nsenter unshare shellcheck skopeo podman flock setpriv rootlesskit-docker-proxy; do
  command -v "$tool" >/dev/null || { echo "prerequisites: $tool is still missing after install" >&2; exit 1; }
done

# ---- BuildKit (buildkitd, buildctl) for the buildx builder tests: test/buildkit.test.ts ----------------------------
# Built from github.com/moby/buildkit at a pinned release through the Go module proxy, inside the downloaded module
# (go install refuses it: its go.mod has exclude directives), into $BUILDKIT_DIR, once: later runs find both binaries
# and build nothing (the Go build cache keeps a rebuild after a wiped dir short). buildkitd's OCI worker runs runc.
# Keep the version in step with BUILDKIT_VERSION in test/helpers/buildkitd.ts.
BUILDKIT_VERSION=v0.34.2
GO_TOOLS_DIR=${PULL_CACHE_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-cache-action/go-tools}
BUILDKIT_DIR=$GO_TOOLS_DIR/github.com/moby/buildkit@$BUILDKIT_VERSION
build_buildkit() {
  [ -x "$BUILDKIT_DIR/buildkitd" ] && [ -x "$BUILDKIT_DIR/buildctl" ] && return 0
  command -v go >/dev/null || { echo "prerequisites: go is missing: it builds buildkitd and buildctl $BUILDKIT_VERSION" >&2; return 1; }
  echo "prerequisites: building buildkitd and buildctl $BUILDKIT_VERSION (Go module proxy; a few minutes the first time)"
  local dir
  dir=$(go mod download -json "github.com/moby/buildkit@$BUILDKIT_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "prerequisites: go mod download github.com/moby/buildkit@$BUILDKIT_VERSION gave no module directory" >&2; return 1; }
  mkdir -p "$BUILDKIT_DIR.partial"
  # Built into a side directory and moved into place whole: a run cut off half-way leaves nothing that looks finished.
  (cd "$dir" && go build -trimpath -ldflags "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" -o "$BUILDKIT_DIR.partial/" ./cmd/buildkitd ./cmd/buildctl) ||
    { rm -rf "$BUILDKIT_DIR.partial"; echo "prerequisites: building buildkitd and buildctl $BUILDKIT_VERSION failed" >&2; return 1; }
  rm -rf "$BUILDKIT_DIR"
  mv "$BUILDKIT_DIR.partial" "$BUILDKIT_DIR"
}
if ! command -v runc >/dev/null; then
  echo "prerequisites: installing runc (buildkitd's OCI worker runs it)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends runc >/dev/null
  command -v runc >/dev/null || { echo "prerequisites: runc is still missing after install" >&2; exit 1; }
fi
build_buildkit

# ---- Docker Engines besides Debian's 20.10 (dockerd only), for test/buildkit.test.ts: dockerd's own BuildKit -------
# reads a reloaded mirror from 25.0, on any address from 28.0. moby's releases are Go modules without a go.mod
# (github.com/docker/docker@vX.Y.Z+incompatible, with vendor.mod instead and no vendored code in the module zip), so
# each is built in a copy of the downloaded module with vendor.mod as its go.mod, its dependencies from the proxy.
# They run with Debian's containerd and runc (dockerd starts a containerd of its own). Keep the versions in step
# with ENGINES in test/buildkit.test.ts.
build_dockerd() {
  local version=$1
  local out=$GO_TOOLS_DIR/github.com/docker/docker@v$version
  [ -x "$out/dockerd" ] && return 0
  command -v go >/dev/null || { echo "prerequisites: go is missing: it builds dockerd $version" >&2; return 1; }
  echo "prerequisites: building dockerd $version (Go module proxy; a few minutes the first time)"
  local dir
  dir=$(go mod download -json "github.com/docker/docker@v$version+incompatible" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$dir" ] && [ -f "$dir/vendor.mod" ] || { echo "prerequisites: go mod download github.com/docker/docker@v$version+incompatible gave no module with a vendor.mod" >&2; return 1; }
  rm -rf "$out.src" "$out.partial"
  mkdir -p "$(dirname "$out")"
  cp -r "$dir" "$out.src" && chmod -R u+w "$out.src" && cp "$out.src/vendor.mod" "$out.src/go.mod" && cp "$out.src/vendor.sum" "$out.src/go.sum" && rm -rf "$out.src/vendor"
  (cd "$out.src" && CGO_ENABLED=0 go build -mod=mod -tags 'exclude_graphdriver_btrfs netgo osusergo' -ldflags "-X github.com/docker/docker/dockerversion.Version=$version" -o "$out.partial/dockerd" ./cmd/dockerd) ||
    { rm -rf "$out.src" "$out.partial"; echo "prerequisites: building dockerd $version failed" >&2; return 1; }
  rm -rf "$out.src" "$out"
  mv "$out.partial" "$out"
}
build_dockerd 27.5.1
build_dockerd 28.5.2
