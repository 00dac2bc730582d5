#!/usr/bin/env bash
# Installs what the tests and the demo run for real: dockerd (docker.io), the Distribution registry
# (docker-registry), containerd with ctr (the containerd client tests), skopeo and podman (the registries.conf
# tests), rootlesskit (a rootless dockerd will not start without its rootlesskit-docker-proxy), zstd (what
# @actions/cache compresses with on hosted runners), and for the tests that stand Docker Hub's real names up in a
# network namespace, iproute2, openssl and util-linux; shellcheck for test/lint-workflows.sh; and real parts written
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

# ---- Go builds at pinned versions ----------------------------------------------------------------------------------
# go_build_pinned MODULE VERSION PACKAGE_DIR: builds the main package PACKAGE_DIR of the Go module MODULE at VERSION,
# fetched through the Go module proxy, into $GO_TOOLS_DIR/MODULE@VERSION/ (one binary, named after PACKAGE_DIR's
# last element). Built once: later runs find the binary and build nothing (the Go build cache makes a rebuild after
# a wiped tools dir quick too). It builds inside the downloaded module, so the module's own go.mod, replace
# directives included, decides the dependencies (go install MODULE@VERSION refuses modules with replace directives).
# Loud on failure: the step fails, naming what could not be built. test/helpers/go-tools.ts finds the result.
GO_TOOLS_DIR=${PULL_CACHE_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-cache-action/go-tools}
# module_dir MODULE@VERSION: downloads the module through the proxy and prints the directory it was unpacked in.
module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}
go_build_pinned() {
  local module=$1 version=$2 package=$3
  local out="$GO_TOOLS_DIR/$module@$version" binary
  binary="$out/$(basename "$package")"
  [ -x "$binary" ] && return 0
  command -v go >/dev/null || { echo "prerequisites: go is missing: it builds $module/$package@$version" >&2; return 1; }
  echo "prerequisites: building $module/$package@$version (Go module proxy)"
  local dir
  dir=$(module_dir "$module@$version")
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

# ---- actionlint for test/lint-workflows.sh ---------------------------------------------------------------------------
go_build_pinned github.com/rhysd/actionlint v1.7.12 cmd/actionlint

# ---- BuildKit (buildkitd, buildctl) for the buildx builder tests: test/e2e/buildkit.test.ts --------------------------
# Keep in step with BUILDKIT_VERSION in test/helpers/buildkitd.ts. buildkitd's OCI worker runs runc.
if ! command -v runc >/dev/null; then
  echo "prerequisites: installing runc (buildkitd's OCI worker runs it)"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends runc >/dev/null
  command -v runc >/dev/null || { echo "prerequisites: runc is still missing after install" >&2; exit 1; }
fi
go_build_pinned github.com/moby/buildkit v0.34.2 cmd/buildkitd
go_build_pinned github.com/moby/buildkit v0.34.2 cmd/buildctl

# ---- Docker Engines besides Debian's 20.10 (dockerd only): the engines users run ---------------------------------------
# 28.0.4 is what GitHub's ubuntu-24.04 image ships (classic image store); Docker 29 is next, on the containerd image
# store on a fresh install. The engine-dependent end-to-end files run on both (npm run test:engine-28,
# test:engine-29; TEST_DOCKERD picks the binary), and test/e2e/buildkit.test.ts runs dockerd's own BuildKit on each
# engine TEST_ENGINES names. Keep in step with test/helpers/engines.ts. They run with Debian's containerd and runc
# (dockerd starts a containerd of its own). Every Go build here shares the one Go build cache and module cache (go
# env GOCACHE, GOMODCACHE): the engines have most of their dependencies in common, with each other and with BuildKit,
# so each later build compiles only what is new to it.
#
# build_dockerd VERSION: a 2x.y release. moby's releases up to 28 are Go modules without a go.mod
# (github.com/docker/docker@vX.Y.Z+incompatible, with vendor.mod instead and no vendored code in the module zip), so
# each is built in a copy of the downloaded module with vendor.mod as its go.mod, its dependencies from the proxy.
build_dockerd() {
  local version=$1
  local out=$GO_TOOLS_DIR/github.com/docker/docker@v$version
  [ -x "$out/dockerd" ] && return 0
  command -v go >/dev/null || { echo "prerequisites: go is missing: it builds dockerd $version" >&2; return 1; }
  echo "prerequisites: building dockerd $version (Go module proxy; a few minutes the first time)"
  local dir
  dir=$(module_dir "github.com/docker/docker@v$version+incompatible")
  [ -n "$dir" ] && [ -f "$dir/vendor.mod" ] || { echo "prerequisites: go mod download github.com/docker/docker@v$version+incompatible gave no module with a vendor.mod" >&2; return 1; }
  rm -rf "$out.src" "$out.partial"
  mkdir -p "$(dirname "$out")"
  cp -r "$dir" "$out.src" && chmod -R u+w "$out.src" && cp "$out.src/vendor.mod" "$out.src/go.mod" && cp "$out.src/vendor.sum" "$out.src/go.sum" && rm -rf "$out.src/vendor"
  (cd "$out.src" && CGO_ENABLED=0 go build -mod=mod -tags 'exclude_graphdriver_btrfs netgo osusergo' -ldflags "-X github.com/docker/docker/dockerversion.Version=$version" -o "$out.partial/dockerd" ./cmd/dockerd) ||
    { rm -rf "$out.src" "$out.partial"; echo "prerequisites: building dockerd $version failed" >&2; return 1; }
  rm -rf "$out.src" "$out"
  mv "$out.partial" "$out"
}
# build_dockerd_v2 MODULE_VERSION ENGINE_VERSION: Docker 29, which lives in the module github.com/moby/moby/v2
# (github.com/docker/docker stops at 28.5.2 on the proxy). A real go.mod, so it builds inside the downloaded module;
# ENGINE_VERSION is what the daemon reports (the module's releases/versions.yaml names the release it was cut from).
build_dockerd_v2() {
  local module_version=$1 version=$2
  local out=$GO_TOOLS_DIR/github.com/moby/moby/v2@$module_version
  [ -x "$out/dockerd" ] && return 0
  command -v go >/dev/null || { echo "prerequisites: go is missing: it builds dockerd $version" >&2; return 1; }
  echo "prerequisites: building dockerd $version from github.com/moby/moby/v2@$module_version (Go module proxy; a few minutes the first time)"
  local dir
  dir=$(module_dir "github.com/moby/moby/v2@$module_version")
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "prerequisites: go mod download github.com/moby/moby/v2@$module_version gave no module directory" >&2; return 1; }
  mkdir -p "$out.partial"
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -tags 'exclude_graphdriver_btrfs netgo osusergo' -ldflags "-X github.com/moby/moby/v2/dockerversion.Version=$version" -o "$out.partial/dockerd" ./cmd/dockerd) ||
    { rm -rf "$out.partial"; echo "prerequisites: building dockerd $version failed" >&2; return 1; }
  rm -rf "$out"
  mv "$out.partial" "$out"
}
build_dockerd 28.0.4
build_dockerd_v2 v2.0.0-beta.24 29.8.1-dev
# Opt-in (TEST_ENGINES="27.5.1 28.5.2"): older and newer 2x releases for test/e2e/buildkit.test.ts's rule.
for engine in ${TEST_ENGINES:-}; do build_dockerd "$engine"; done
