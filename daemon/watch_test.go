package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// TestWatchReportsChanges: saving the ACL file (written beside and renamed
// over, as editors do) is reported once after the quiet period; a file the
// config does not name is ignored; the watch ends with the daemon.
func TestWatchReportsChanges(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	web := newTCPEcho(t, "web")
	yaml := fmt.Sprintf("admin: {listen: \"\"}\nacl: {file: hba.conf}\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", freePort(t, "tcp"), web.addr())
	w := startWorld(t, yaml, map[string]string{"hba.conf": "host all all allow\n"})
	changed, err := w.d.Watch(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	w.writeFile("unrelated.txt", "x")
	select {
	case <-changed:
		t.Fatal("a change to a file the config does not name was reported")
	case <-time.After(300 * time.Millisecond):
	}

	tmp := filepath.Join(w.dir, ".hba.conf.swp")
	if err := os.WriteFile(tmp, []byte("host all 127.0.0.2/32 reject\nhost all all allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.dir, "hba.conf")); err != nil {
		t.Fatal(err)
	}
	awaitChange(t, changed, "the ACL file's change was not reported")
	select {
	case <-changed:
		t.Fatal("one save was reported twice")
	case <-time.After(200 * time.Millisecond):
	}
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	_ = w.d.Close()
}

// TestWatchFollowsNewACLFolder: a reload whose config names an ACL file in
// another folder watches that folder from then on, so the next save of the
// new ACL file is reported like the first one was.
func TestWatchFollowsNewACLFolder(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	w, changed, render := aclWatchWorld(t)
	w.writeFile("acl.d/hba.conf", "host all all allow\n")
	w.writeFile("relay.yaml", render("acl.d/hba.conf"))
	awaitChange(t, changed, "the config's change was not reported")
	if err := w.d.Reload(); err != nil { // as relay does on the report
		t.Fatalf("reload: %v", err)
	}
	w.writeFile("acl.d/hba.conf", "host all 127.0.0.2/32 reject\nhost all all allow\n")
	awaitChange(t, changed, "a save of the ACL file the reload named, in a folder of its own, was not reported")
	_ = w.d.Close()
}

// TestWatchFollowsSymlinkedConfig: a config file that is a symlink into
// another folder (a checkout the venue's files are managed in) is watched
// where its content changes too: saving the target reloads. Only the
// link's folder was watched, and the save went unnoticed.
func TestWatchFollowsSymlinkedConfig(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	yaml := webYAML(t)
	w := startWorld(t, yaml, nil)
	checkout := t.TempDir()
	target := filepath.Join(checkout, "venue.yaml")
	if err := os.WriteFile(target, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(w.dir, "relay.yaml")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	changed, err := w.d.Watch(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte(yaml+"# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	awaitChange(t, changed, "a save of the file the config's symlink points to was not reported")
	_ = w.d.Close()
}

// TestWatchFollowsConfigWhoseACLComesLater: saving a config that names an
// ACL file in a new folder before that file exists fails the reload (the
// ACL is missing) and keeps the old config; creating the ACL file then is
// reported, so the reload the admin expects happens. It was not: only the
// config in force was watched, and its folders did not include the new one.
func TestWatchFollowsConfigWhoseACLComesLater(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	w, changed := aclComesLater(t)
	w.writeFile("acl.d/hba.conf", "host all all allow\n")
	awaitChange(t, changed, "the ACL file the saved config names, created after the failed reload, was not reported")
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload once the ACL file exists: %v", err)
	}
	_ = w.d.Close()
}

// aclWatchWorld starts a daemon whose config names hba.conf, watched with a
// short quiet period, and makes the folder acl.d beside it; render writes
// the config naming another ACL file.
func aclWatchWorld(t *testing.T) (*relayWorld, <-chan struct{}, func(aclFile string) string) {
	t.Helper()
	web := newTCPEcho(t, "web")
	webPort := freePort(t, "tcp")
	render := func(aclFile string) string {
		return fmt.Sprintf("admin: {listen: \"\"}\nacl: {file: %s}\nlisteners:\n"+
			"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", aclFile, webPort, web.addr())
	}
	w := startWorld(t, render("hba.conf"), map[string]string{"hba.conf": "host all all allow\n"})
	changed, err := w.d.Watch(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(w.dir, "acl.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	return w, changed, render
}

// aclComesLater is aclWatchWorld whose config was saved naming
// acl.d/hba.conf before that file exists, and reloaded: the reload failed.
func aclComesLater(t *testing.T) (*relayWorld, <-chan struct{}) {
	t.Helper()
	w, changed, render := aclWatchWorld(t)
	w.writeFile("relay.yaml", render("acl.d/hba.conf"))
	awaitChange(t, changed, "the config's change was not reported")
	if err := w.d.Reload(); err == nil { // as relay does on the report
		t.Fatal("a reload onto a missing ACL file succeeded")
	}
	return w, changed
}

// webYAML is a config of one listener "web" to a new echo upstream.
func webYAML(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", freePort(t, "tcp"), newTCPEcho(t, "web").addr())
}

// awaitChange fails the test unless the watch reports a change within 5 s;
// missing says what was not reported.
func awaitChange(t *testing.T, changed <-chan struct{}, missing string) {
	t.Helper()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal(missing)
	}
}

// TestWatchFollowsConfigMapSwap: a config mounted as Kubernetes mounts a
// ConfigMap (relay.yaml -> ..data/relay.yaml, ..data -> a folder per
// version) is reported when the kubelet swaps ..data to a new version and
// removes the old one, and again at the next swap, from the folder the
// reload found.
func TestWatchFollowsConfigMapSwap(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	yaml := webYAML(t)
	w := startWorld(t, yaml, nil)
	swap := func(version int) {
		t.Helper()
		dir := fmt.Sprintf("..v%d", version)
		if err := os.Mkdir(filepath.Join(w.dir, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		w.writeFile(filepath.Join(dir, "relay.yaml"), fmt.Sprintf("%s# version %d\n", yaml, version))
		tmp := filepath.Join(w.dir, "..data_tmp")
		if err := os.Symlink(dir, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(w.dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(w.dir, fmt.Sprintf("..v%d", version-1))); err != nil {
			t.Fatal(err)
		}
	}
	swap(1)
	link := filepath.Join(w.dir, "relay.yaml")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "relay.yaml"), link); err != nil {
		t.Fatal(err)
	}
	if err := w.d.Reload(); err != nil { // the daemon reads the mounted layout
		t.Fatalf("reload: %v", err)
	}
	changed, err := w.d.Watch(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for version := 2; version <= 3; version++ {
		swap(version)
		awaitChange(t, changed, fmt.Sprintf("the swap to version %d was not reported", version))
		if err := w.d.Reload(); err != nil {
			t.Fatalf("reload of version %d: %v", version, err)
		}
	}
	_ = w.d.Close()
}
