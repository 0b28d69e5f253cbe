package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/config"
)

// ACLPath is where cfg's ACL file is: a relative acl.file is taken relative
// to the config file's folder, so a config and its ACL can move together.
// It is empty when the config has no ACL.
func ACLPath(cfg *config.Config) string {
	if cfg.ACLFile == "" || filepath.IsAbs(cfg.ACLFile) || cfg.Path == "" {
		return cfg.ACLFile
	}
	return filepath.Join(filepath.Dir(cfg.Path), cfg.ACLFile)
}

// LoadACL reads cfg's ACL file and checks that every listener it names is
// defined. It returns nil, nil when the config has no ACL.
func LoadACL(cfg *config.Config) (*acl.List, error) {
	path := ACLPath(cfg)
	if path == "" {
		return nil, nil
	}
	list, err := acl.LoadFile(path, acl.Options{})
	if err != nil {
		return nil, err
	}
	var unknown []string
	for _, name := range list.Listeners() {
		if !slices.ContainsFunc(cfg.Listeners, func(l config.Listener) bool { return l.Name == name }) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%s: names listeners the config does not define: %s",
			path, strings.Join(unknown, ", "))
	}
	return list, nil
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
