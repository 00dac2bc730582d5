#!/usr/bin/env bash
# actionlint on .github/workflows, with shellcheck on their run: scripts. test/prerequisites.sh builds actionlint
# (go_build_pinned, at the version below) and installs shellcheck; npm test runs both (npm run lint:workflows);
# arguments go to actionlint.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.7.12 # keep in step with test/prerequisites.sh
actionlint=${PULL_CACHE_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/pull-cache-action/go-tools}/github.com/rhysd/actionlint@$version/actionlint
[ -x "$actionlint" ] || { echo "lint-workflows: $actionlint is missing: run bash test/prerequisites.sh (it builds it)" >&2; exit 1; }
shellcheck=$(command -v shellcheck) || { echo "lint-workflows: shellcheck is missing: run bash test/prerequisites.sh (it installs it)" >&2; exit 1; }
"$actionlint" -shellcheck "$shellcheck" "$@"
echo "lint-workflows: .github/workflows is clean (actionlint $version)"
