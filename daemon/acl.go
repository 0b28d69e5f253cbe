package daemon

import (
	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/config"
)

// loadACL reads cfg's ACL file, refusing rules that name listeners cfg
// does not define. It returns nil, nil when the config has no ACL.
func loadACL(cfg *config.Config) (*acl.List, error) {
	if cfg.ACLPath == "" {
		return nil, nil
	}
	return acl.LoadFile(cfg.ACLPath, acl.Options{Listeners: cfg.Names()})
}

// storeACL makes list the rules in force for every guard. A nil list lets
// every source connect, which is said once each time it becomes so.
func (d *Daemon) storeACL(list *acl.List) {
	if list == nil && (d.acls.Load() != nil || !d.ready.Load()) {
		d.log.Warn().Msg("no acl section: every source address may connect to every listener")
	}
	if list != nil && len(list.Rules()) == 0 {
		d.log.Warn().Msg("the acl file has no rules: every source is rejected")
	}
	d.acls.Store(list)
}
