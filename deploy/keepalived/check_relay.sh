#!/bin/sh
# check_relay.sh URL: keepalived's vrrp_script. Exit 0 while relay's
# /healthz answers 200 within a second, else 1 (the box gives the virtual
# address away). Needs curl.
exec curl -fsS --max-time 1 -o /dev/null "${1:-http://127.0.0.1:9090/healthz}"
