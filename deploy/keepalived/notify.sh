#!/bin/sh
# notify.sh STATEFILE TYPE NAME STATE PRIORITY: keepalived's notify hook.
# keepalived appends TYPE NAME STATE PRIORITY to the command line. Logs the
# transition to syslog and records the newest state (MASTER, BACKUP, FAULT,
# STOP) with its time in STATEFILE, for monitoring. relay needs no action:
# with freebind it listens on the virtual address in every state.
statefile=$1
state=$4
logger -t relay-vrrp "vrrp instance $3 is now $state (priority $5)" 2>/dev/null || true
if [ -n "$statefile" ]; then
	printf '%s %s\n' "$(date +%s.%N)" "$state" >> "$statefile"
fi
exit 0
