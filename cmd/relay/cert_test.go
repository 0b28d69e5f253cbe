package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
)

// TestCertHostList: -host as an admin types it ("10.0.0.1, venue.local,")
// gives exactly those names: spaces after commas and an empty entry do
// not become names of their own (" venue.local" matches no client's
// venue.local, and the handshake fails at the venue).
func TestCertHostList(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir)
	relayCert(t, "server", "-dir", dir, "-name", "venue", "-host", "10.0.0.1, venue.local,, signage.local ,")
	c, err := certs.ReadCert(filepath.Join(dir, "venue.crt"))
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(slices.Values(c.DNSNames))
	if want := []string{"signage.local", "venue", "venue.local"}; !slices.Equal(names, want) {
		t.Errorf("DNS names %q, want %q", names, want)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("IP addresses %v, want [10.0.0.1]", c.IPAddresses)
	}
	if err := c.VerifyHostname("venue.local"); err != nil {
		t.Errorf("the certificate does not verify for venue.local: %v", err)
	}
}

// TestCertDaysLong: a long -days (a CA for the life of the boxes) gives a
// certificate valid that long, not a duration that overflowed into the
// past ("validity ends (1989-12-09...) before it starts").
func TestCertDaysLong(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir, "-days", "200000")
	c, err := certs.ReadCert(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Now().AddDate(0, 0, 199999); c.NotAfter.Before(want) {
		t.Errorf("not after %v, want after %v", c.NotAfter, want)
	}
	code, _, stderr := runCmd("cert", "ca", "-dir", t.TempDir(), "-days", "5000000")
	if code != 2 || !strings.Contains(stderr, "-days 5000000") {
		t.Errorf("-days 5000000: exit %d, stderr %q; want 2 and a line naming -days", code, stderr)
	}
}

// TestCertCAMakesItsFolder: `relay cert ca -dir /etc/relay/tls` on a box
// where that folder does not exist yet makes it (0700: it holds the CA's
// key) instead of failing with "open .../ca.key: no such file or
// directory"; the certificates issued into it afterwards work as usual.
func TestCertCAMakesItsFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay", "tls")
	relayCert(t, "ca", "-dir", dir)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o700 {
		t.Errorf("folder mode %o, want 700", mode)
	}
	relayCert(t, "client", "-dir", dir, "-name", "boxoffice-1")
	if _, err := certs.ReadCert(filepath.Join(dir, "boxoffice-1.crt")); err != nil {
		t.Fatal(err)
	}
}

// TestCertFromExpiringCA: a CA that has expired issues nothing (its
// certificates verify nowhere, and relay cert said "wrote" and exit 0),
// and a certificate asked to outlive its CA ends with the CA, saying so,
// instead of claiming years the chain cannot give.
func TestCertFromExpiringCA(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir, "-not-before", "2020-01-01T00:00:00Z", "-days", "1")
	code, stdout, stderr := runCmd("cert", "server", "-dir", dir, "-name", "venue")
	if code != 1 || !strings.Contains(stderr, "expired") || !strings.Contains(stderr, "2020-01-02") {
		t.Errorf("issue from an expired CA: exit %d, stdout %q, stderr %q; want 1 and the CA's end", code, stdout, stderr)
	}
	if _, err := certs.ReadCert(filepath.Join(dir, "venue.crt")); err == nil {
		t.Error("a certificate was written from an expired CA")
	}

	dir = t.TempDir()
	relayCert(t, "ca", "-dir", dir, "-days", "30")
	ca, err := certs.ReadCert(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCmd("cert", "client", "-dir", dir, "-name", "bo")
	if code != 0 || !strings.Contains(stdout, "ends with the CA") {
		t.Errorf("issue past the CA's end: exit %d, stdout %q, stderr %q; want 0 and a note", code, stdout, stderr)
	}
	c, err := certs.ReadCert(filepath.Join(dir, "bo.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NotAfter.After(ca.NotAfter) {
		t.Errorf("the certificate ends %v, after its CA (%v)", c.NotAfter, ca.NotAfter)
	}
}

// TestCheckWarnsExpiredCertificate: relay check warns of a listener
// certificate that has expired, as relay does when it puts it in force
// (exit 0; 1 with -strict); it said nothing, and the config was "valid".
func TestCheckWarnsExpiredCertificate(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir, "-not-before", "2020-01-01T00:00:00Z", "-days", "3650")
	relayCert(t, "server", "-dir", dir, "-name", "venue", "-not-before", "2020-01-01T00:00:00Z", "-days", "30")
	cfg := filepath.Join(dir, "relay.yaml")
	writeFile(t, cfg, "admin: {listen: \"\"}\nlisteners:\n"+
		"  - {name: tunnel, mode: tcp, listen: \"127.0.0.1:10443\", upstream: \"127.0.0.1:9\", tls: {cert: venue.crt, key: venue.key}}\n")
	want := "warning: listeners[0].tls.cert: " + filepath.Join(dir, "venue.crt") + " expired on 2020-01-31"
	code, _, stderr := runCmd("check", "-config", cfg)
	if code != 0 || !strings.Contains(stderr, want) {
		t.Errorf("check: exit %d, stderr %q; want 0 and %q", code, stderr, want)
	}
	if code, _, stderr = runCmd("check", "-strict", "-config", cfg); code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("check -strict: exit %d, stderr %q; want 1", code, stderr)
	}
}

// TestCertHelp: relay cert -h and relay cert show -h print the usage of
// relay cert (exit 2, as every -h of relay); they said unknown action "-h"
// and tried to open a file called -h.
func TestCertHelp(t *testing.T) {
	for _, args := range [][]string{{"cert", "-h"}, {"cert", "--help"}, {"cert", "show", "-h"}, {"cert", "show"}} {
		code, _, stderr := runCmd(args...)
		if code != 2 || !strings.HasPrefix(stderr, "usage:\n  relay cert ca") {
			t.Errorf("relay %s: exit %d, stderr %q; want 2 and the usage alone", strings.Join(args, " "), code, stderr)
		}
	}
}

// TestCertNameControlCharacter: a -name with a control character (a
// newline pasted with it, an escape sequence) is a usage error, and no
// file is written. It was taken: the subject printed over two lines, and
// a server or client certificate went to a file whose name held the
// newline.
func TestCertNameControlCharacter(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir)
	for _, args := range [][]string{
		{"ca", "-dir", filepath.Join(dir, "ca2"), "-name", "venue\nca"},
		{"server", "-dir", dir, "-name", "venue\n"},
		{"client", "-dir", dir, "-name", "box\x1b[31moffice"},
		{"client", "-dir", dir, "-name", "box\toffice"},
	} {
		code, stdout, stderr := runCmd(append([]string{"cert"}, args...)...)
		if code != 2 || !strings.Contains(stderr, "-name") || stdout != "" {
			t.Errorf("relay cert %q: exit %d, stdout %q, stderr %q; want 2 and a line naming -name", args, code, stdout, stderr)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"ca.crt", "ca.key"}; !slices.Equal(names, want) {
		t.Errorf("files %q, want only %q", names, want)
	}
}

// TestCertShowArguments: relay cert show says which argument is wrong (a
// second file, a flag it does not have), as every other command does; it
// printed the usage alone. "--" ends the flags, so "-x.crt" can be named.
func TestCertShowArguments(t *testing.T) {
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir)
	crt := filepath.Join(dir, "ca.crt")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{crt, "extra"}, `relay cert show: unexpected argument "extra"`},
		{[]string{"-v", crt}, `flag provided but not defined: -v`},
	} {
		code, stdout, stderr := runCmd(append([]string{"cert", "show"}, tt.args...)...)
		if code != 2 || !strings.HasPrefix(stderr, tt.want+"\n") || stdout != "" {
			t.Errorf("relay cert show %q: exit %d, stdout %q, stderr %q; want 2 and %q first", tt.args, code, stdout, stderr, tt.want)
		}
	}
	dash := filepath.Join(dir, "-x.crt")
	if err := os.Link(crt, dash); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if code, stdout, stderr := runCmd("cert", "show", "--", "-x.crt"); code != 0 || !strings.Contains(stdout, "CN=relay-ca") {
		t.Errorf("relay cert show -- -x.crt: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestCertNotesValidityOutsideNow: a certificate made already expired, or
// not valid yet (-not-before, for tests and staged renewals), is written
// as asked, with a note saying so: it was written silently, and the
// mistake (a -not-before a century off) showed only at the first
// handshake.
func TestCertNotesValidityOutsideNow(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-not-before", "1990-01-01T00:00:00Z", "-days", "1"}, "note: it expired on 1990-01-02, before it was made"},
		{[]string{"-not-before", "2999-01-01T00:00:00Z"}, "note: it is not valid before 2999-01-01"},
	} {
		code, stdout, stderr := runCmd(append([]string{"cert", "ca", "-dir", t.TempDir()}, tt.args...)...)
		if code != 0 || !strings.Contains(stdout, tt.want) {
			t.Errorf("relay cert ca %q: exit %d, stdout %q, stderr %q; want 0 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
	if _, stdout, _ := runCmd("cert", "ca", "-dir", t.TempDir()); strings.Contains(stdout, "note:") {
		t.Errorf("a CA valid now got a note:\n%s", stdout)
	}
}

// TestCertDaysZero: -days 0 is refused like a negative count; it made a
// certificate of the default validity (ten years for a CA), which is not
// what anyone typing 0 meant. Leaving -days out still gives the default.
func TestCertDaysZero(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runCmd("cert", "ca", "-dir", dir, "-days", "0")
	if code != 2 || !strings.Contains(stderr, "-days 0") || stdout != "" {
		t.Errorf("-days 0: exit %d, stdout %q, stderr %q; want 2 and a line naming -days 0", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.key")); err == nil {
		t.Error("-days 0 wrote a CA")
	}
	relayCert(t, "ca", "-dir", dir)
	c, err := certs.ReadCert(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Now().AddDate(0, 0, 3649); c.NotAfter.Before(want) {
		t.Errorf("the default CA ends %v, want after %v", c.NotAfter, want)
	}
}

// TestCertEmptyDir: -dir "" (an unset variable in `-dir $PKI`) is a usage
// error naming -dir; it said "mkdir : no such file or directory", or
// looked for "the CA in :".
func TestCertEmptyDir(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, action := range []string{"ca", "server", "client"} {
		code, stdout, stderr := runCmd("cert", action, "-dir", "", "-name", "x")
		if code != 2 || !strings.Contains(stderr, "-dir is empty") || stdout != "" {
			t.Errorf("relay cert %s -dir '': exit %d, stdout %q, stderr %q; want 2 and -dir named", action, code, stdout, stderr)
		}
	}
}
