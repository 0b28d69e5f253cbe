package daemon

import (
	"time"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/admin"
)

// Facts returns what the daemon knows beyond its listeners' counters, for
// the admin endpoint: version, config, reloads, and the ACL's counts.
func (d *Daemon) Facts() admin.Relay {
	d.mu.Lock()
	r := admin.Relay{
		Version:     d.version,
		Started:     d.started,
		Config:      d.cfg.Path,
		Loaded:      time.Unix(0, d.counts.lastOK.Load()),
		AdminListen: d.cfg.Admin.Listen,
		AdminError:  d.adminErr,
	}
	if d.lastReload != nil {
		last := *d.lastReload
		r.LastReload = &last
	}
	if d.admin != nil {
		r.AdminListen = d.adminAt
	}
	path := d.cfg.ACLPath
	d.mu.Unlock()

	if list := d.acls.Load(); list != nil {
		r.ACL = &admin.ACL{File: path, Rules: len(list.Rules())}
		for _, c := range d.acls.Counts() {
			r.ACL.Decisions = append(r.ACL.Decisions, aclDecisions(c))
		}
	}
	return r
}

// aclDecisions maps one guard's counts onto admin's shape.
func aclDecisions(c acl.Counts) admin.ACLDecisions {
	return admin.ACLDecisions{
		Listener: c.Listener,
		Proto:    c.Proto.String(),
		Allowed:  c.Allowed,
		Rejected: c.Rejected,
		Logged:   c.Logged,
		Refused:  c.Refused,
	}
}

// noteReload records a reload's outcome for the status page; err nil: the
// new config is in force. Called with d.mu held.
func (d *Daemon) noteReloadLocked(at time.Time, err error) {
	r := &admin.Reload{At: at, OK: err == nil}
	if err != nil {
		r.Error = err.Error()
	}
	d.lastReload = r
}
