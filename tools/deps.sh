#!/usr/bin/env bash
# deps.sh - installs what building, testing and running sstfetch need on a
# Debian 12 machine: compilers, meson, the libraries the engine and the tool
# link, Criterion for the tests, and the real parts the tests start (nginx as
# the HTTP origin, xxhsum as the reference digest, @20minutes/s3rver as the
# S3 server). Safe to run again.
set -euo pipefail

packages=(
	build-essential clang meson ninja-build pkg-config
	liburing-dev libcurl4-openssl-dev libxxhash-dev libjansson-dev
	libjemalloc-dev libinih-dev libcriterion-dev libclang-rt-14-dev
	nginx-light xxhash curl python3
	nodejs npm openssl
)

missing=()
for p in "${packages[@]}"; do
	# NodeSource's nodejs bundles npm and conflicts with Debian's npm
	# package: an npm on PATH is enough (apt would replace Node 20 by 18).
	[[ $p == npm ]] && command -v npm >/dev/null && continue
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	else
		command -v sudo >/dev/null || { echo "deps.sh: run as root or install sudo" >&2; exit 1; }
		sudo "$@"
	fi
}

if ((${#missing[@]} == 0)); then
	echo "deps.sh: every Debian package is installed"
else
	echo "deps.sh: installing ${missing[*]}"
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The Debian nginx package starts a system nginx on port 80; the tests run
# their own on free ports and do not need it.

# The tests' S3 server (tools/s3rver.js, tests/support/s3server.c): the npm
# package @20minutes/s3rver, exactly 4.0.4, in a prefix of its own outside
# the repository. It needs Node.js >= 20 (its "engines"); Debian 12's own
# nodejs is 18.20, too old: these machines have NodeSource's Node 20.
s3rver_prefix=/usr/local/lib/sstfetch-node
s3rver_version=4.0.4
s3rver_dir=$s3rver_prefix/node_modules/@20minutes/s3rver
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
	echo "deps.sh: node $(node --version) is too old for @20minutes/s3rver" \
		"$s3rver_version, which needs >= 20 (Debian 12 ships 18)" >&2
	exit 1
fi
have=$(node -p "require('$s3rver_dir/package.json').version" 2>/dev/null || true)
if [[ $have == "$s3rver_version" ]] && node -e "require('$s3rver_dir')" 2>/dev/null; then
	echo "deps.sh: @20minutes/s3rver $s3rver_version is installed in $s3rver_prefix"
else
	echo "deps.sh: installing @20minutes/s3rver@$s3rver_version into $s3rver_prefix"
	as_root npm install --prefix "$s3rver_prefix" --save-exact --no-audit --no-fund \
		--loglevel=error "@20minutes/s3rver@$s3rver_version"
fi
