package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	vcs := func(kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		for i := 0; i < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	for name, c := range map[string]struct {
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		"stamped wins":   {"1.4.0+3.gabc", vcs("vcs.revision", "0123456789abcdef"), "1.4.0+3.gabc"},
		"module version": {"", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		"vcs revision":   {"", vcs("vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), "0123456789ab"},
		"vcs dirty":      {"", vcs("vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), "0123456789ab+dirty"},
		"nothing known":  {"", vcs(), "(devel)"},
		"no build info":  {"", nil, "(devel)"},
		"short revision": {"", vcs("vcs.revision", "abc"), "abc"},
	} {
		if got := versionOf(c.stamped, c.bi); got != c.want {
			t.Errorf("%s: versionOf = %q, want %q", name, got, c.want)
		}
	}
}

// TestMakeBuildStampsVersion builds the binary the way the README says and
// checks that `relay version` names the commit instead of (devel).
func TestMakeBuildStampsVersion(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	want, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "relay")
	cmd := exec.Command("make", "--no-print-directory", "-C", "../..", "build", "OUT="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v: %s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(want)); !strings.HasPrefix(string(out), "relay "+v+" ") {
		t.Fatalf("relay version = %q, want it to start with %q", out, "relay "+v)
	}
	_ = os.Remove(bin)
}
