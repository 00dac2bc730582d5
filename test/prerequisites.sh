#!/usr/bin/env bash
# Installs what the tests and the demo run for real: dockerd (docker.io), the Distribution registry
# (docker-registry), containerd with ctr (the containerd client tests), zstd (what @actions/cache compresses
# with on hosted runners), and for the tests that
# stand Docker Hub's real names up in a network namespace, iproute2, openssl and util-linux; and real parts written
# in Go, built from their modules at pinned versions (below). Idempotent.
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
if [ ${#missing[@]} -gt 0 ]; then
  echo "prerequisites: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -d node_modules ] || { echo "prerequisites: node_modules is missing; run npm ci first" >&2; exit 1; }
for tool in dockerd docker docker-registry containerd ctr zstd ip openssl nsenter unshare; do
  command -v "$tool" >/dev/null || { echo "prerequisites: $tool is still missing after install" >&2; exit 1; }
done

# ---- Go builds at pinned versions ----------------------------------------------------------------------------------
# go_build_pinned MODULE VERSION PACKAGE_DIR: builds the main package PACKAGE_DIR of the Go module MODULE at VERSION,
# fetched through the Go module proxy, into $GO_TOOLS_DIR/MODULE@VERSION/ (one binary, named after PACKAGE_DIR's
# last element). Built once: later runs find the binary and build nothing (the Go build cache makes a rebuild after
# a wiped tools dir quick too). It builds inside the downloaded module, so the module's own go.mod, replace
# directives included, decides the dependencies (go install MODULE@VERSION refuses modules with replace directives).
# Loud on failure: the step fails, naming what could not be built. test/helpers/go-tools.ts finds the result.
GO_TOOLS_DIR=${PULL_CACHE_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-cache-action/go-tools}
go_build_pinned() {
  local module=$1 version=$2 package=$3
  local out="$GO_TOOLS_DIR/$module@$version" binary
  binary="$out/$(basename "$package")"
  [ -x "$binary" ] && return 0
  command -v go >/dev/null || { echo "prerequisites: go is missing: it builds $module/$package@$version" >&2; return 1; }
  echo "prerequisites: building $module/$package@$version (Go module proxy)"
  local dir
  dir=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "prerequisites: go mod download $module@$version gave no module directory" >&2; return 1; }
  mkdir -p "$out"
  # Built to a temporary name and renamed: a run cut off half-way leaves no binary that looks finished.
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$binary.partial" "./$package") ||
    { rm -f "$binary.partial"; echo "prerequisites: building $module/$package@$version failed" >&2; return 1; }
  mv "$binary.partial" "$binary"
}

# ---- Distribution 3.x: the action's default registry, which the end-to-end suites run against besides Debian's 2.8 ----
# Keep in step with test/helpers/go-tools.ts (REGISTRY_3) and the default registry-version in action.yml.
go_build_pinned github.com/distribution/distribution/v3 v3.1.1 cmd/registry
