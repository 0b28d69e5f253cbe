package config

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// TestACLPath: a relative acl.file, from the file, the environment or a
// flag alike, is found beside the config file; an absolute one is kept.
func TestACLPath(t *testing.T) {
	const listener = "listeners:\n  - {name: a, mode: tcp, listen: \"127.0.0.1:80\", upstream: \"10.0.0.5:80\"}\n"
	dir := filepath.Dir(writeConfig(t, ""))
	tests := []struct {
		name, yaml string
		environ    []string
		want       string
	}{
		{"none", listener, nil, ""},
		{"relative", "acl: {file: relay_hba.conf}\n" + listener, nil, filepath.Join(dir, "relay_hba.conf")},
		{"relative in a folder", "acl: {file: acl/hba.conf}\n" + listener, nil, filepath.Join(dir, "acl", "hba.conf")},
		{"absolute", "acl: {file: /etc/relay/relay_hba.conf}\n" + listener, nil, "/etc/relay/relay_hba.conf"},
		{"from the environment", listener, []string{"RELAY_ACL__FILE=env_hba.conf"}, filepath.Join(dir, "env_hba.conf")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "relay.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			environ := tt.environ
			if environ == nil {
				environ = []string{}
			}
			cfg, err := Load(LoadOptions{Path: path, Environ: environ})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ACLPath != tt.want {
				t.Errorf("ACLPath = %q, want %q", cfg.ACLPath, tt.want)
			}
		})
	}
}

// TestACLPathFromFlag: -acl-file's relative path is beside the config file
// too, as its help and the README say (not in the current folder).
func TestACLPathFromFlag(t *testing.T) {
	path := writeConfig(t, "listeners:\n  - {name: a, mode: tcp, listen: \"127.0.0.1:80\", upstream: \"10.0.0.5:80\"}\n")
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"-acl-file", "flag_hba.conf"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{Path: path, Environ: []string{}, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(path), "flag_hba.conf"); cfg.ACLPath != want {
		t.Errorf("ACLPath = %q, want %q", cfg.ACLPath, want)
	}
}
