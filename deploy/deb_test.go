// Package deploy_test checks what deploy/ ships: the Debian package built
// by `make deb` installs, passes `relay check` with its own config, and
// removes and purges without leaving anything behind.
package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// needTools skips the test when the machine cannot run it (CI, as root on
// Debian, always can).
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("deploy: needs root (dpkg --root, network namespaces)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("deploy: %s is not installed (make test installs it through .ci/install-deps)", tool)
		}
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// files lists every regular file and directory below root that is not
// dpkg's own database.
func files(t *testing.T, root string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || rel == "var" || rel == "var/lib" || strings.HasPrefix(rel, "var/lib/dpkg") {
			return nil
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDebianPackage(t *testing.T) {
	needTools(t, "dpkg", "dpkg-deb", "git")
	out := t.TempDir()
	start := time.Now()
	deb := strings.TrimSpace(run(t, "..", []string{"DEB_OUT=" + out}, "./deploy/build-deb.sh"))
	t.Logf("make deb: %s in %v", filepath.Base(deb), time.Since(start).Round(time.Millisecond))
	info, err := os.Stat(deb)
	if err != nil {
		t.Fatalf("package not written: %v", err)
	}
	t.Logf("package size: %.1f MiB", float64(info.Size())/(1<<20))

	version := strings.TrimSpace(run(t, "", nil, "dpkg-deb", "-f", deb, "Version"))
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(version) {
		t.Errorf("Version %q is not a Debian version starting with a digit", version)
	}
	if want := "relay_" + version + "_"; !strings.HasPrefix(filepath.Base(deb), want) {
		t.Errorf("file name %s does not carry the version %s", filepath.Base(deb), version)
	}

	// A throwaway root: dpkg's database in a temp folder, maintainer
	// scripts run outside a chroot with DPKG_ROOT set (they touch nothing
	// outside it: systemd is not running there).
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := func(args ...string) time.Duration {
		t0 := time.Now()
		run(t, "", nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless"}, args...)...)
		return time.Since(t0)
	}

	tInstall := dpkg("-i", deb)
	for _, want := range []string{
		"usr/bin/relay", "lib/systemd/system/relay.service", "etc/relay/relay.yaml",
		"usr/share/man/man8/relay.8.gz", "usr/share/doc/relay/README.md",
		"usr/lib/relay/keepalived/keepalived.conf",
	} {
		if _, err := os.Stat(filepath.Join(root, want)); err != nil {
			t.Errorf("installed package lacks /%s", want)
		}
	}
	// keepalived runs the recipe's scripts from where its conf names them:
	// each must be in the package, executable, and outside /usr/share/doc,
	// which minimal images exclude (dpkg path-exclude=/usr/share/doc/*).
	conf, err := os.ReadFile(filepath.Join(root, "usr/lib/relay/keepalived/keepalived.conf"))
	if err != nil {
		t.Fatal(err)
	}
	scripts := regexp.MustCompile(`(?m)^\s*(?:script|notify)\s+"(/\S+)`).FindAllStringSubmatch(string(conf), -1)
	if len(scripts) < 2 {
		t.Errorf("keepalived.conf names %d scripts, want the check and the notify script", len(scripts))
	}
	for _, m := range scripts {
		path := m[1]
		st, err := os.Stat(filepath.Join(root, path))
		switch {
		case strings.HasPrefix(path, "/usr/share/doc/"):
			t.Errorf("keepalived.conf runs %s, under /usr/share/doc, which minimal images leave out", path)
		case err != nil:
			t.Errorf("keepalived.conf runs %s, which the package does not install", path)
		case st.Mode().Perm()&0o111 == 0:
			t.Errorf("keepalived.conf runs %s, installed mode %v", path, st.Mode().Perm())
		}
	}
	bin := filepath.Join(root, "usr/bin/relay")
	if v := run(t, "", nil, bin, "version"); !strings.Contains(v, version) {
		t.Errorf("relay version = %q, want it to name the package version %s", strings.TrimSpace(v), version)
	}
	cfg := filepath.Join(root, "etc/relay/relay.yaml")
	run(t, "", nil, bin, "check", "-config", cfg)
	yaml, _ := os.ReadFile(cfg)
	for _, m := range regexp.MustCompile(`(?m)^\s*listen:\s*"?([^"\s#]+)`).FindAllStringSubmatch(string(yaml), -1) {
		if !strings.HasPrefix(m[1], "127.0.0.1:") && !strings.HasPrefix(m[1], "[::1]:") {
			t.Errorf("packaged config listens on %s; it must stay on loopback until the admin edits it", m[1])
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/relay.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/relay ") {
		t.Errorf("unit does not start /usr/bin/relay:\n%s", unit)
	}
	checkUnitParses(t, filepath.Join(root, "lib/systemd/system/relay.service"), unit)
	confs := run(t, "", nil, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W", "-f=${Conffiles}", "relay")
	if !strings.Contains(confs, "/etc/relay/relay.yaml") || !strings.Contains(confs, "_hba.conf") {
		t.Errorf("conffiles = %q, want the config and its ACL", confs)
	}

	tRemove := dpkg("-r", "relay")
	left := files(t, root)
	for _, f := range left {
		if !strings.HasPrefix(f, "etc") {
			t.Errorf("dpkg -r left /%s", f)
		}
	}
	if _, err := os.Stat(cfg); err != nil {
		t.Errorf("dpkg -r removed the admin's config (conffiles stay until purge): %v", err)
	}
	tPurge := dpkg("-P", "relay")
	if left := files(t, root); len(left) > 0 {
		t.Errorf("dpkg -P left %v", left)
	}
	t.Logf("install %v, remove %v, purge %v", tInstall.Round(time.Millisecond), tRemove.Round(time.Millisecond), tPurge.Round(time.Millisecond))
}

// checkUnitParses fails on what systemd would warn about in the packaged
// unit: a Documentation= entry that is not a URI (systemd logs "Invalid URL,
// ignoring" on every daemon-reload), and, where systemd-analyze is
// installed, any line of the file it reports.
func checkUnitParses(t *testing.T, path string, unit []byte) {
	t.Helper()
	uri := regexp.MustCompile(`^(https?|file|info|man):\S+$`)
	for _, line := range strings.Split(string(unit), "\n") {
		doc, ok := strings.CutPrefix(line, "Documentation=")
		if !ok {
			continue
		}
		for _, u := range strings.Fields(doc) {
			if !uri.MatchString(u) {
				t.Errorf("unit's Documentation= holds %q, not a URI: %s", u, line)
			}
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze is not installed: the unit's syntax is not verified")
		return
	}
	// verify also reports what the throwaway root lacks (the binary, other
	// units); only lines naming a line of the unit file are about its syntax.
	out, _ := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, path+":") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}
