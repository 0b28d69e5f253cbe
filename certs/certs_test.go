package certs

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t testing.TB, dir string) *Authority {
	t.Helper()
	ca, der, err := NewAuthority(Request{Name: "venue-ca", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), der, ca.Key, false); err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *Authority, dir, name string, kind Kind, hosts ...string) (string, string) {
	t.Helper()
	der, key, err := ca.Issue(kind, Request{Name: name, Hosts: hosts, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	crt, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := WriteFiles(crt, k, der, key, true); err != nil {
		t.Fatal(err)
	}
	return crt, k
}

func TestIssuedCertificatesVerify(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	crt, key := issue(t, ca, dir, "venue.example.org", KindServer, "127.0.0.1", "venue")
	pair, err := LoadPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	for _, name := range []string{"127.0.0.1", "venue", "venue.example.org"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a server certificate verifies for client auth")
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v (%v), want 0600", fi.Mode(), err)
	}
	other, _ := issue(t, ca, dir, "other", KindClient)
	a, _ := ReadCert(crt)
	b, _ := ReadCert(other)
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 || a.SerialNumber.BitLen() < 64 {
		t.Errorf("serials %x and %x: want random and distinct", a.SerialNumber, b.SerialNumber)
	}
	d := Describe(a)
	for _, want := range []string{"CN=venue.example.org", "127.0.0.1", "use:         server", Fingerprint(a)} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe lacks %q:\n%s", want, d)
		}
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	crt, _ := issue(t, ca, dir, "venue", KindServer)
	_, otherKey := issue(t, ca, dir, "other", KindServer)
	tests := []struct {
		name      string
		crt, key  string
		wantKey   string
		wantInMsg string
	}{
		{"key of another certificate", crt, otherKey, "key", "does not match"},
		{"missing key", crt, filepath.Join(dir, "gone.key"), "key", "no such file"},
		{"key as certificate", otherKey, otherKey, "cert", "no PEM certificate"},
	}
	for _, tc := range tests {
		_, err := LoadPair(tc.crt, tc.key)
		var fe *FileError
		if !errors.As(err, &fe) || fe.Key != tc.wantKey || !strings.Contains(err.Error(), tc.wantInMsg) {
			t.Errorf("%s: %v, want a FileError at %s saying %q", tc.name, err, tc.wantKey, tc.wantInMsg)
		}
		if strings.Contains(err.Error(), "PRIVATE") {
			t.Errorf("%s: the error quotes the key", tc.name)
		}
	}
	if _, err := LoadClient(ClientFiles{}); err == nil {
		t.Error("LoadClient without a CA succeeded")
	}
}

func TestWriteFilesKeepsExistingAndKeysPrivate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	der, key, err := ca.Issue(KindClient, Request{Name: "b", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	crt, k := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")
	if err := os.WriteFile(k, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(crt, k, der, key, false); err == nil {
		t.Fatal("an existing key file was overwritten without overwrite")
	}
	if err := WriteFiles(crt, k, der, key, true); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(k); fi.Mode().Perm() != 0o600 {
		t.Errorf("an overwritten key file has mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestServerStoreSwapsTheCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	c1, k1 := issue(t, ca, dir, "one", KindServer)
	c2, k2 := issue(t, ca, dir, "two", KindServer)
	st1, err := LoadServer(ServerFiles{Cert: c1, Key: k1})
	if err != nil {
		t.Fatal(err)
	}
	st2, err := LoadServer(ServerFiles{Cert: c2, Key: k2, ClientCA: filepath.Join(dir, "ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(st1)
	outer := s.Config()
	served := func() string {
		cfg, err := outer.GetConfigForClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Certificates[0].Leaf.Subject.CommonName
	}
	if got := served(); got != "one" {
		t.Fatalf("serves %s, want one", got)
	}
	s.Store(st2)
	if got := served(); got != "two" || s.Config() != outer {
		t.Fatalf("after Store serves %s (same outer config: %v), want two", got, s.Config() == outer)
	}
}

// TestWriteFilesLeavesPairWhole: a write that cannot place the certificate
// leaves the key as it was. Without overwrite, an existing certificate
// whose key is missing made WriteFiles write a new key first and then fail:
// a key that matches no certificate was left beside the old one. With
// overwrite, a certificate path that cannot be written (here a folder)
// failed after the old key had been replaced, and the venue's certificate
// no longer matched its key at the next reload or start.
func TestWriteFilesLeavesPairWhole(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	der, key, err := ca.Issue(KindServer, Request{Name: "v", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	crt, k := filepath.Join(dir, "v.crt"), filepath.Join(dir, "v.key")
	if err := os.WriteFile(crt, []byte("existing certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(crt, k, der, key, false); err == nil {
		t.Fatal("an existing certificate file was overwritten without overwrite")
	}
	if _, err := os.Stat(k); !os.IsNotExist(err) {
		t.Errorf("a refused write left a key file behind (stat: %v)", err)
	}

	crtDir := filepath.Join(dir, "w.crt")
	if err := os.Mkdir(crtDir, 0o755); err != nil {
		t.Fatal(err)
	}
	wk := filepath.Join(dir, "w.key")
	if err := os.WriteFile(wk, []byte("the key in use"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(crtDir, wk, der, key, true); err == nil {
		t.Fatal("writing a certificate over a folder succeeded")
	}
	if b, _ := os.ReadFile(wk); string(b) != "the key in use" {
		t.Errorf("a failed write replaced the key in use: now %.40q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 5 { // ca.crt, ca.key, v.crt, w.crt, w.key
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files left in the folder: %v", names)
	}
}
