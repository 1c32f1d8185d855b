#!/bin/sh
# build-with-pkg-config.sh - builds main.cpp as a user of libsstfetch would:
# with pkg-config's flags for sstfetch (here the uninstalled .pc that meson
# writes into the build dir; an installed one is found the same way without
# PKG_CONFIG_PATH) and jansson, then runs it once (--help).
#
#   build-with-pkg-config.sh PCDIR MAIN.CPP OUT SANITIZE_FLAG CXX [CXX ARGS...]
#
# SANITIZE_FLAG is "" or the -fsanitize=... of the library's build (a
# sanitized library needs a program linked with the same runtime).
set -eu
pcdir=$1 src=$2 out=$3 san=$4
shift 4
export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
flags=$(pkg-config --cflags --libs sstfetch-uninstalled jansson)
echo "$* -std=c++17 -Wall -Wextra -Werror $san -o $out $src $flags -pthread"
# shellcheck disable=SC2086 # flags are words
"$@" -std=c++17 -Wall -Wextra -Werror $san -o "$out" "$src" $flags -pthread
# The uninstalled library is not on the loader's path: its -L dirs are.
libdirs=$(pkg-config --libs-only-L sstfetch-uninstalled | sed 's/^-L//; s/ -L/:/g; s/ *$//')
LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$out" --help >/dev/null
echo "built and ran $out"
