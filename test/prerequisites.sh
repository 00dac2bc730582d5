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
