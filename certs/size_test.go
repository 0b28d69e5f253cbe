package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOversizedFilesRefused: every reader of a PEM file stops at maxFileSize
// and names the file. Before, each read the whole file: `relay cert show
// /dev/zero`, or a tls.cert that named it, died of "fatal error: out of
// memory" with every goroutine's stack. The files here are sparse (no disk
// used) and start with a good certificate or key, so a reader that read
// them whole would accept them.
func TestOversizedFilesRefused(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	crt, key := issue(t, ca, dir, "venue", KindServer)
	grow := func(file string) string {
		t.Helper()
		big := file + ".big"
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(big, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(big, maxFileSize+1); err != nil { // a hole of zeros after the PEM
			t.Fatal(err)
		}
		return big
	}
	bigCrt, bigKey, bigCA := grow(crt), grow(key), grow(filepath.Join(dir, "ca.crt"))
	tests := []struct {
		name, file string
		read       func() error
	}{
		{"LoadPair cert", bigCrt, func() error { _, err := LoadPair(bigCrt, key); return err }},
		{"LoadPair key", bigKey, func() error { _, err := LoadPair(crt, bigKey); return err }},
		{"LoadPool", bigCA, func() error { _, err := LoadPool(bigCA); return err }},
		{"ReadCert", bigCrt, func() error { _, err := ReadCert(bigCrt); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read()
			if err == nil {
				t.Fatalf("a %d-byte file was accepted", maxFileSize+1)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.file) || !strings.Contains(msg, "larger than") {
				t.Errorf("error %q does not name %s as too large", msg, tt.file)
			}
		})
	}
	// The bound leaves room for what admins do name: a bundle of every
	// public CA is about 220 KiB.
	if maxFileSize < 1<<20 {
		t.Errorf("maxFileSize %d is below 1 MiB", maxFileSize)
	}
}

// TestNoCertificateSaysWhatIsThere: a file with no PEM certificate says
// what it holds where that tells the slip: the key named as the
// certificate (cert and key swapped in the config, or `relay cert show`
// on the .key), a certificate in binary DER, or other binary ASN.1 (a
// PKCS#12 .pfx from a Windows box). It said only "no PEM certificate
// found".
func TestNoCertificateSaysWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	crt, key := issue(t, ca, dir, "venue", KindServer)
	c, err := ReadCert(crt)
	if err != nil {
		t.Fatal(err)
	}
	der := filepath.Join(dir, "venue.der")
	if err := os.WriteFile(der, c.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// What a Windows box exports: PKCS#12 (.pfx), binary like DER but no
	// certificate to parse. Its first bytes as openssl writes them.
	pfx := filepath.Join(dir, "venue.pfx")
	if err := os.WriteFile(pfx, []byte{0x30, 0x82, 0x04, 0x0c, 0x02, 0x01, 0x03, 0x30, 0x82, 0x03, 0xc2}, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{key, "holds a private key"},
		{der, "binary DER"},
		{pfx, "PKCS#12"},
	} {
		_, err := ReadCert(tt.file)
		if !errors.Is(err, ErrNoCertificate) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadCert(%s): %v; want ErrNoCertificate saying %q", tt.file, err, tt.want)
		}
		if _, err := LoadPair(tt.file, key); !strings.Contains(fmt.Sprint(err), tt.want) {
			t.Errorf("LoadPair(%s): %v; want it saying %q", tt.file, err, tt.want)
		}
	}
}

// TestWriteFilesKeyNotPlacedKeepsCertificate: when the key cannot be put in
// place after the certificate was (its name is a folder; in the field a
// bind-mounted or immutable key file), the certificate goes back to what
// it was, so the folder never holds a certificate whose key is nowhere.
// The new certificate stayed: relay cert server -force left a pair that a
// reload refuses and a restart cannot start with.
func TestWriteFilesKeyNotPlacedKeepsCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	crt, key := issue(t, ca, dir, "venue", KindServer)
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(key, "in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	der, k, err := ca.Issue(KindServer, Request{Name: "venue", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	err = WriteFiles(crt, key, der, k, true)
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("WriteFiles over a folder at the key's name: %v; want an error naming %s", err, key)
	}
	if after, _ := os.ReadFile(crt); !bytes.Equal(after, before) {
		t.Error("the certificate was replaced although its key could not be placed")
	}
	// A new pair (nothing there before) leaves no certificate behind.
	fresh := filepath.Join(dir, "fresh.crt")
	if err := WriteFiles(fresh, key, der, k, true); err == nil {
		t.Fatal("WriteFiles over a folder at the key's name succeeded")
	}
	if _, err := os.Lstat(fresh); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a certificate without its key was left at %s (%v)", fresh, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") || strings.HasSuffix(e.Name(), ".old") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestWriteFilesNamesTheFile: a folder the files cannot be written in is
// named by the file that was to be written, not by the temporary name
// beside it ("open /sys/kernel/.ca.key.2419082201.tmp: permission
// denied", which the admin never asked for).
func TestWriteFilesNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	der, k, err := ca.Issue(KindServer, Request{Name: "venue", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "ca.crt") // a file, where a folder should be
	key := filepath.Join(notDir, "venue.key")
	err = WriteFiles(filepath.Join(notDir, "venue.crt"), key, der, k, false)
	if err == nil || !strings.Contains(err.Error(), key) || strings.Contains(err.Error(), ".tmp") {
		t.Errorf("WriteFiles in a file: %v; want an error naming %s and no temporary name", err, key)
	}
}

// TestDescribeEscapesControlCharacters: Describe (relay cert show, on a
// certificate someone sent) prints control characters of the names as
// escapes: an escape sequence in a common name went to the terminal raw
// (recolouring or retitling it), and a newline forged a line of the
// output.
func TestDescribeEscapesControlCharacters(t *testing.T) {
	name := "venue\x1b[31m\nnot after:   2099-01-01"
	_, der, err := NewAuthority(Request{Name: name, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	d := Describe(c)
	if strings.ContainsAny(d, "\x1b") || strings.Count(d, "\nnot after:") != 1 {
		t.Errorf("Describe printed the name's control characters raw:\n%s", d)
	}
	if !strings.Contains(d, `CN=venue\x1b[31m\nnot after:   2099-01-01`) {
		t.Errorf("Describe does not show the name escaped:\n%s", d)
	}
}
