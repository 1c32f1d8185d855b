#!/usr/bin/env bash
# deps.sh - installs what building, testing and running sstfetch need on a
# Debian 12 machine: compilers, meson, the libraries the engine and the tool
# link, Criterion for the tests, and the real parts the tests start (nginx as
# the HTTP origin, xxhsum as the reference digest). Safe to run again.
set -euo pipefail

packages=(
	build-essential clang meson ninja-build pkg-config
	liburing-dev libcurl4-openssl-dev libxxhash-dev libjansson-dev
	libjemalloc-dev libinih-dev libcriterion-dev libclang-rt-14-dev
	nginx-light xxhash curl python3
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]} == 0)); then
	echo "deps.sh: everything is installed"
	exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || { echo "deps.sh: run as root or install sudo" >&2; exit 1; }
	sudo=(sudo)
fi
echo "deps.sh: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian nginx package starts a system nginx on port 80; the tests run
# their own on free ports and do not need it.
