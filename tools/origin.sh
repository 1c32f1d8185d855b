#!/usr/bin/env bash
# origin.sh - run nginx as a loopback HTTP origin serving one directory.
#
#   tools/origin.sh start DIR    -> prints "http://127.0.0.1:PORT STATEDIR"
#   tools/origin.sh stop STATEDIR
#
# start picks a free loopback port, writes an nginx configuration into a
# private state directory (pid file, error log and every temp path live
# there, nothing touches /etc/nginx or /var), starts nginx, waits until the
# port accepts connections, and prints the base URL and the state directory
# on one line, so that a caller can do:
#
#   read -r url state < <(tools/origin.sh start "$dir")
#   ...
#   tools/origin.sh stop "$state"
#
# The state directory also holds `url` and `port` files. stop sends nginx
# QUIT, waits for the master to exit (KILL after 10 s) and removes the state
# directory; it refuses a directory that origin.sh did not create.
#
# Environment: NGINX (default: nginx from PATH, then /usr/sbin/nginx),
# TMPDIR (where the state directory goes), ORIGIN_WORKERS (default 2).
# Works as root (workers then run as root so they can read any DIR) and as
# an ordinary user (DIR must be readable by that user).
set -euo pipefail

MARKER=".sstfetch-origin"

die() {
	echo "origin.sh: $*" >&2
	exit 1
}

find_nginx() {
	if [[ -n "${NGINX:-}" ]]; then
		echo "$NGINX"
	elif command -v nginx >/dev/null 2>&1; then
		command -v nginx
	elif [[ -x /usr/sbin/nginx ]]; then
		echo /usr/sbin/nginx
	else
		die "nginx not found (install nginx-light or set NGINX)"
	fi
}

# A port the kernel considers free right now. Another process may take it
# before nginx binds; start retries in that case.
pick_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null && return
	fi
	echo $((20000 + RANDOM % 40000))
}

port_answers() {
	# bash's /dev/tcp: no curl or nc needed.
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
	local state=$1 root=$2 port=$3
	local user_line=""
	# Only root may switch users; without this line workers would run as
	# nobody and could not read files under e.g. /root.
	if [[ $(id -u) -eq 0 ]]; then
		user_line="user root;"
	fi
	cat >"$state/nginx.conf" <<EOF
# Written by origin.sh; everything nginx writes stays in $state.
$user_line
worker_processes ${ORIGIN_WORKERS:-2};
daemon on;
pid $state/nginx.pid;
error_log $state/error.log warn;

events {
	worker_connections 1024;
}

http {
	access_log off;
	server_tokens off;
	default_type application/octet-stream;
	types { }

	sendfile on;
	tcp_nopush on;
	tcp_nodelay on;
	keepalive_timeout 65;
	keepalive_requests 100000;

	client_body_temp_path $state/client_body;
	proxy_temp_path $state/proxy;
	fastcgi_temp_path $state/fastcgi;
	uwsgi_temp_path $state/uwsgi;
	scgi_temp_path $state/scgi;

	server {
		listen 127.0.0.1:$port;
		root $root;
		location / {
		}
	}
}
EOF
}

cmd_start() {
	local dir=${1:-}
	[[ -n "$dir" ]] || die "usage: origin.sh start DIR"
	[[ -d "$dir" ]] || die "$dir: not a directory"
	local root nginx state port attempt
	root=$(cd "$dir" && pwd -P)
	nginx=$(find_nginx)
	state=$(mktemp -d "${TMPDIR:-/tmp}/sstf-origin.XXXXXX")
	: >"$state/$MARKER"

	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		port=$(pick_port)
		write_config "$state" "$root" "$port"
		if "$nginx" -p "$state" -c "$state/nginx.conf" -e "$state/error.log" \
			</dev/null >"$state/nginx.out" 2>&1; then
			break
		fi
		if grep -q "Address already in use" "$state/nginx.out" "$state/error.log" 2>/dev/null \
			&& [[ $attempt -lt 10 ]]; then
			continue
		fi
		cat "$state/nginx.out" >&2 || true
		rm -rf "$state"
		die "nginx failed to start"
	done

	local i
	for ((i = 0; i < 100; i++)); do
		if port_answers "$port"; then
			echo "http://127.0.0.1:$port" >"$state/url"
			echo "$port" >"$state/port"
			echo "http://127.0.0.1:$port $state"
			return 0
		fi
		sleep 0.05
	done
	cat "$state/error.log" >&2 || true
	cmd_stop "$state"
	die "nginx did not answer on 127.0.0.1:$port"
}

cmd_stop() {
	local state=${1:-}
	[[ -n "$state" ]] || die "usage: origin.sh stop STATEDIR"
	[[ -d "$state" ]] || die "$state: no such state directory"
	[[ -f "$state/$MARKER" ]] || die "$state: not an origin.sh state directory"

	local pid=""
	if [[ -s "$state/nginx.pid" ]]; then
		pid=$(<"$state/nginx.pid")
	fi
	if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
		# QUIT: finish in-flight responses, then exit.
		kill -QUIT "$pid" 2>/dev/null || true
		local i
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null; then
			# Workers outlive a killed master; take them by parent id.
			local -a workers
			mapfile -t workers < <(pgrep -P "$pid" || true)
			kill -KILL "$pid" "${workers[@]}" 2>/dev/null || true
		fi
	fi
	rm -rf "$state"
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*)
	echo "usage: origin.sh start DIR | origin.sh stop STATEDIR" >&2
	exit 2
	;;
esac
