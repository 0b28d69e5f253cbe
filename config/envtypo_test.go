package config

import (
	"errors"
	"testing"
)

// TestMisspeltVariableBlamesTheVariable: a RELAY_ variable whose name makes
// a key the schema does not have (RELAY__LOG__LEVEL: one underscore too
// many) or a key below a value (RELAY_LOG__LEVEL__X) is reported as coming
// from that variable. The error blamed the config file ("relay.yaml: _log:
// unknown key"), where the admin then looked for a key that is not there.
func TestMisspeltVariableBlamesTheVariable(t *testing.T) {
	path := writeConfig(t, "log: {format: json}\n"+minimal)
	for _, tc := range []struct{ env, where, key string }{
		{"RELAY__LOG__LEVEL=debug", "environment RELAY__LOG__LEVEL", "_log"},
		{"RELAY_LOG__LEVEL__X=debug", "environment RELAY_LOG__LEVEL__X", "log.level"},
		{"RELAY_LOG____LEVEL=debug", "environment RELAY_LOG____LEVEL", "log."},
	} {
		_, err := Load(LoadOptions{Path: path, Environ: []string{tc.env}})
		var es Errors
		if !errors.As(err, &es) || len(es) != 1 || es[0].Where != tc.where || es[0].Path != tc.key {
			t.Errorf("%s: %v; want one problem at %s, key %s", tc.env, err, tc.where, tc.key)
		}
	}
	// A problem with the file's own key still names its line.
	own := writeConfig(t, "log: {format: jsn}\n"+minimal)
	_, err := Load(LoadOptions{Path: own, Environ: []string{"RELAY_LOG__LEVEL=debug"}})
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Where != own+":1" || es[0].Path != "log.format" {
		t.Errorf("the file's own bad key: %v; want it at %s:1", err, own)
	}
}
