#!/usr/bin/env bash
# actionlint on .github/workflows, with shellcheck on their run: scripts. actionlint is built from its Go module at
# the pinned version below the first time, and kept with the project's other Go tools between runs. npm test runs
# this (npm run lint:workflows); arguments go to actionlint.
set -euo pipefail
cd "$(dirname "$0")/.."
module=github.com/rhysd/actionlint
version=v1.7.12
dir=${PULL_CACHE_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-cache-action/go-tools}/$module@$version
if [ ! -x "$dir/actionlint" ]; then
  command -v go >/dev/null || { echo "lint-workflows: go is missing: it builds actionlint $version" >&2; exit 1; }
  echo "lint-workflows: building actionlint $version (Go module proxy)"
  # Into a directory of its own, then moved: a build cut off half-way leaves no binary that looks finished.
  rm -rf "$dir/.partial"
  GOBIN="$dir/.partial" go install "$module/cmd/actionlint@$version"
  mv "$dir/.partial/actionlint" "$dir/actionlint"
  rmdir "$dir/.partial"
fi
shellcheck=$(command -v shellcheck) || { echo "lint-workflows: shellcheck is missing (test/prerequisites.sh installs it)" >&2; exit 1; }
"$dir/actionlint" -shellcheck "$shellcheck" "$@"
echo "lint-workflows: .github/workflows is clean (actionlint $version)"
