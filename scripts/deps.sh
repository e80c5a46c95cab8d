#!/usr/bin/env bash
# Installs what ClusterChat's integration tests and `make cluster` need:
# MariaDB, Redis, nginx with the stream module, and tmux; plus make, and a C
# compiler with libc headers, which `go test -race` needs (cgo). Idempotent: does
# nothing when everything is there. Installs with apt-get (after apt-get
# update) when run as root or with passwordless sudo; otherwise prints the
# exact command to run and exits non-zero.
#
# The packages' own system services are not started by this script (a
# temporary policy-rc.d forbids it): the tests run private instances on
# free ports and never use the standard ones.
set -euo pipefail

missing=()

have() { # have BINARY: found in PATH or in an sbin directory
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

have mariadbd && have mariadb-install-db || missing+=(mariadb-server)
have redis-server || missing+=(redis-server)
have nginx || missing+=(nginx)
stream_module=no
for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
	[ -e "$m" ] && stream_module=yes
done
if [ "$stream_module" = no ] && have nginx && nginx -V 2>&1 | grep -Eq -- '--with-stream( |$)'; then
	stream_module=yes # compiled in
fi
[ "$stream_module" = yes ] || missing+=(libnginx-mod-stream)
have tmux || missing+=(tmux)
have make || missing+=(make)
have gcc || have cc || missing+=(gcc)
[ -e /usr/include/stdio.h ] || missing+=(libc6-dev)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "deps: missing packages: ${missing[*]}"
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: apt-get not found; install the equivalent of: ${missing[*]}" >&2
	exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo"
	else
		echo "deps: not root and no passwordless sudo; run:" >&2
		echo "  sudo sh -c '$cmd'" >&2
		exit 1
	fi
fi

# Keep the packages' system services from starting (ports 3306, 6379, 80).
policy=/usr/sbin/policy-rc.d
made_policy=no
if [ ! -e "$policy" ]; then
	$sudo sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
	made_policy=yes
fi
cleanup() { if [ "$made_policy" = yes ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

echo "deps: $cmd"
$sudo apt-get update
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps: installed ${missing[*]}"
