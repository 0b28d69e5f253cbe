package daemon

import (
	"fmt"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/lint"
)

// loadACL reads cfg's ACL file, refusing rules that name listeners cfg
// does not define. It returns nil, nil when the config has no ACL. Errors
// name the key, as config's do.
func loadACL(cfg *config.Config) (*acl.List, error) {
	if cfg.ACLPath == "" {
		return nil, nil
	}
	list, err := acl.LoadFile(cfg.ACLPath, acl.Options{Listeners: cfg.ACLNames()})
	if err != nil {
		return nil, fmt.Errorf("acl.file: %w", err)
	}
	return list, nil
}

// storeACL makes list the rules in force for every guard; nil lets every
// source connect.
func (d *Daemon) storeACL(list *acl.List) {
	d.acls.Store(list)
}

// warn logs what lint finds in a config and ACL just put in force: the
// warnings relay check prints for the same files.
func (d *Daemon) warn(cfg *config.Config, list *acl.List) {
	for _, w := range lint.Check(cfg, list, lint.ReadKernel()) {
		d.log.Warn().Str("key", w.Key).Msg(w.Msg)
	}
}
