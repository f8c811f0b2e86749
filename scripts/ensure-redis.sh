#!/usr/bin/env bash
# ensure-redis.sh makes sure the tests can run: they start their own
# throwaway redis-server (internal/redistest), so the binary must be on PATH.
# With --with-cc it also makes sure a C compiler exists, which `go test -race`
# needs (cgo).
#
# With --topology it also checks what the Cluster and Sentinel tests (make
# test/topology) need: redis-server 7.0 or later (cluster-port, CLUSTER
# ADDSLOTSRANGE, SENTINEL DEBUG). The sentinels are `redis-server
# --sentinel`: every redis-server has the Sentinel mode built in, so
# Debian's redis-sentinel package (a symlink, a config file and a system
# service that would start a sentinel on port 26379) is not installed.
#
# As root on Debian/Ubuntu it installs what is missing with apt-get (one
# `apt-get update` at most); otherwise it prints the command to run and fails.
# REDIS_SERVER overrides the redis-server binary, as in internal/redistest.
set -euo pipefail

want_cc=false
want_topology=false
for arg in "$@"; do
	case "$arg" in
	--with-cc) want_cc=true ;;
	--topology) want_topology=true ;;
	*)
		echo "usage: $0 [--with-cc] [--topology]" >&2
		exit 2
		;;
	esac
done

missing=()
if ! command -v "${REDIS_SERVER:-redis-server}" >/dev/null 2>&1; then
	missing+=(redis-server)
fi
if $want_cc && ! command -v "$(go env CC 2>/dev/null || echo gcc)" >/dev/null 2>&1; then
	missing+=(gcc libc6-dev)
fi

# check_topology fails unless redis-server is 7.0 or later.
check_topology() {
	$want_topology || return 0
	local bin version major
	bin="${REDIS_SERVER:-redis-server}"
	version="$("$bin" --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p')"
	major="${version%%.*}"
	if [ -z "$major" ] || [ "$major" -lt 7 ]; then
		echo "$bin ${version:-(unknown version)} is too old for the Cluster and Sentinel tests: they need redis-server 7.0 or later (Debian 12 ships 7.0); set REDIS_SERVER to a newer binary" >&2
		exit 1
	fi
}

if [ ${#missing[@]} -eq 0 ]; then
	check_topology
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "${missing[0]} is missing: install it with \`sudo apt-get install -y ${missing[*]}\`" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "${missing[0]} is missing and apt-get is not available: install ${missing[*]} with your package manager" >&2
	exit 1
fi

echo "installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if ! command -v "${REDIS_SERVER:-redis-server}" >/dev/null 2>&1; then
	echo "${REDIS_SERVER:-redis-server} is still not on PATH after installing ${missing[*]}" >&2
	exit 1
fi
check_topology
