package certs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
// on the .key), or a certificate in binary DER. It said only "no PEM
// certificate found".
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
	for _, tt := range []struct{ file, want string }{
		{key, "holds a private key"},
		{der, "binary DER"},
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
