#!/bin/sh
# Stands in for the relay binary under `go run ./bench -relay`: takes the
# listen and upstream addresses from the relay.yaml the bench wrote and runs
# the ceiling forwarder (built beside this script as ./fwd) with the flags in
# $CEIL_ARGS; $CEIL_GOMAXPROCS sets its GOMAXPROCS. Loopback addresses only.
dir=$(dirname "$0")
if [ "$1" = version ]; then echo "ceiling ${CEIL_ARGS} GOMAXPROCS=${CEIL_GOMAXPROCS:-default}"; exit 0; fi
[ "$1" = -config ] || { echo "wrap.sh: want -config FILE" >&2; exit 2; }
listen=$(sed -n 's/^ *listen: *\([0-9.]*:[0-9]*\) *$/\1/p' "$2" | head -1)
up=$(sed -n 's/^ *upstream: *\([0-9.]*:[0-9]*\) *$/\1/p' "$2" | head -1)
case "$listen$up" in 127.*:*127.*:*) ;; *) echo "wrap.sh: non-loopback addresses '$listen' '$up'" >&2; exit 2;; esac
[ -n "$CEIL_GOMAXPROCS" ] && export GOMAXPROCS=$CEIL_GOMAXPROCS
exec "$dir/fwd" -listen "$listen" -upstream "$up" $CEIL_ARGS
