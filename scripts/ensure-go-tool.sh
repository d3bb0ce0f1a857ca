#!/usr/bin/env bash
# Install a pinned Go-built tool into <repo>/.tools/bin (or $TOOLS_BIN) via the
# Go module proxy, but only when it is missing, was built from a different
# module version, or was built with a different Go toolchain than the one on
# PATH (a stale toolchain breaks analysers such as staticcheck).
#
# usage: scripts/ensure-go-tool.sh <binary-name> <package-path> <version>
#   e.g. scripts/ensure-go-tool.sh staticcheck honnef.co/go/tools/cmd/staticcheck v0.8.2
# Prints the absolute path of the binary on stdout; progress goes to stderr.
set -euo pipefail

if [[ $# -ne 3 ]]; then
	echo "usage: $0 <binary-name> <package-path> <version>" >&2
	exit 2
fi
name=$1 pkg=$2 version=$3

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="/usr/local/go/bin:$PATH"
PATH="$(go env GOPATH)/bin:$PATH"
tools_bin=${TOOLS_BIN:-$repo_root/.tools/bin}
bin=$tools_bin/$name

# installed_matches: the binary exists, embeds the wanted module version and
# was built by the current Go toolchain.
installed_matches() {
	[[ -x $bin ]] || return 1
	local info want_go have_go have_ver
	info=$(go version -m "$bin" 2>/dev/null) || return 1
	want_go=$(go env GOVERSION)
	have_go=$(awk 'NR == 1 { print $2 }' <<<"$info")
	have_ver=$(awk '$1 == "mod" { print $3; exit }' <<<"$info")
	[[ $have_go == "$want_go" && $have_ver == "$version" ]]
}

if installed_matches; then
	echo "$name $version already installed at $bin" >&2
else
	echo "installing $pkg@$version into $tools_bin" >&2
	mkdir -p "$tools_bin"
	# Run outside the workspace so go.work/go.mod and GOFLAGS such as -mod
	# cannot interfere with "go install pkg@version".
	(cd / && GOWORK=off GOFLAGS='' GOBIN="$tools_bin" go install "$pkg@$version")
	if ! installed_matches; then
		echo "error: $bin does not report $pkg@$version after install" >&2
		exit 1
	fi
fi
printf '%s\n' "$bin"
