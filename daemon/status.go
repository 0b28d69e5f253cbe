package daemon

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/admin"
	"github.com/edgerelay/relay/config"
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
		r.AdminListen = d.admin.Addr().String()
	}
	path := d.cfg.ACLPath
	d.mu.Unlock()

	if list := d.acls.Load(); list != nil {
		r.ACL = &admin.ACL{File: path, Rules: len(list.Rules())}
		for _, c := range d.acls.Counts() {
			r.ACL.Decisions = append(r.ACL.Decisions, aclDecisions(c))
		}
		for _, rj := range d.acls.Recent() {
			r.ACL.Recent = append(r.ACL.Recent, admin.Rejection{
				Time:     rj.Time,
				Listener: rj.Listener,
				Proto:    rj.Proto.String(),
				Client:   rj.Client.String(),
				Rule:     rj.Rule,
			})
		}
	}
	return r
}

// adminAllow returns the admin endpoint's Allow hook for an endpoint bound
// at listen: the ACL decides where AdminRulesApply says so, else everyone
// who reaches it may.
func (d *Daemon) adminAllow(listen string) func(netip.AddrPort) bool {
	admit := d.acls.Guard(config.AdminACLName, acl.ProtoTCP, d.log)
	exposed := !loopbackOnly(listen)
	return func(client netip.AddrPort) bool {
		if !adminRulesApply(exposed, d.acls.Load()) {
			return true
		}
		return admit(client)
	}
}

// AdminRulesApply reports whether the rules of list for the listener name
// admin (and "all") decide who may open an admin endpoint bound at listen:
// when it listens beyond loopback, or when the ACL file names admin.
// Otherwise whoever can reach a loopback address may, as without an ACL
// file. relay check -acl-test explains the endpoint by it.
func AdminRulesApply(listen string, list *acl.List) bool {
	return adminRulesApply(!loopbackOnly(listen), list)
}

func adminRulesApply(exposed bool, list *acl.List) bool {
	return list != nil && (exposed || slices.Contains(list.Listeners(), config.AdminACLName))
}

// loopbackOnly reports whether a host:port only listens on loopback.
func loopbackOnly(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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
