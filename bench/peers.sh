#!/usr/bin/env bash
# Installs the programs `go run ./bench` compares the relay with: HAProxy,
# nginx with its stream module, socat, rinetd, stunnel4 (the tunnel
# scenario), and iperf3 (optional: the tcp scenario's second load source,
# beside the bench's own load generator). Debian/Ubuntu packages.
# Idempotent; quiet when everything is already there. The packages' own
# daemons are kept from starting: the bench runs each peer itself, on
# loopback ports, and stops it afterwards.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have haproxy || need+=(haproxy)
have nginx || need+=(nginx)
# Debian builds the stream module as a separate package.
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || nginx -V 2>&1 | grep -q -- '--with-stream ' || need+=(libnginx-mod-stream)
have socat || need+=(socat)
have rinetd || need+=(rinetd)
have iperf3 || need+=(iperf3)
have stunnel4 || have stunnel || need+=(stunnel4)
[ ${#need[@]} -eq 0 ] && { echo "peers: all installed"; exit 0; }

if [ "$(id -u)" -ne 0 ]; then
  echo "peers: missing ${need[*]}; run as root (sudo make peers) to install them" >&2
  exit 1
fi
echo "peers: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# policy-rc.d (exit 101) keeps the packages from starting their daemons.
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
[ $had_policy -eq 0 ] && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'if [ $had_policy -eq 0 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
# iperf3 asks whether to start its daemon; the answer is no.
echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "peers: installed ${need[*]}" >&2
