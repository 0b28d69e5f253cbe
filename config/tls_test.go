package config

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/certs"
)

// tlsFolder writes a CA and two server certificates ("venue", "other") with
// their keys into a fresh folder and returns it.
func tlsFolder(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, der, err := certs.NewAuthority(certs.Request{Name: "ca", NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteFiles(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), der, ca.Key, false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"venue", "other"} {
		der, key, err := ca.Issue(certs.KindServer, certs.Request{Name: name, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteFiles(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), der, key, false); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadIn writes yaml as relay.yaml in dir and loads it.
func loadIn(t *testing.T, dir, yaml string) (*Config, error) {
	t.Helper()
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(LoadOptions{Path: path, Environ: []string{}})
}

const tlsListener = `listeners:
  - name: tunnel
    mode: raw
    listen: 127.0.0.1:10443
    upstream: 127.0.0.1:10001
`

func TestTLSPathsAreRelativeToTheConfig(t *testing.T) {
	dir := tlsFolder(t)
	cfg, err := loadIn(t, dir, tlsListener+`    tls: {cert: venue.crt, key: venue.key, client_ca: ca.crt, min_version: "1.2"}
  - name: box
    mode: tcp
    listen: 127.0.0.1:10002
    upstream: 127.0.0.1:10443
    upstream_tls: {ca: ca.crt, server_name: venue, key_exchange: x25519}
`)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Listeners[0].TLS
	want := certs.ServerFiles{Cert: filepath.Join(dir, "venue.crt"), Key: filepath.Join(dir, "venue.key"),
		ClientCA: filepath.Join(dir, "ca.crt"), MinVersion: tls.VersionTLS12}
	if got == nil || *got != want {
		t.Errorf("tls = %+v, want %+v", got, want)
	}
	up := cfg.Listeners[1].UpstreamTLS
	if up == nil || up.CA != filepath.Join(dir, "ca.crt") || up.ServerName != "venue" || up.KeyExchange != certs.KeyExchangeX25519 {
		t.Errorf("upstream_tls = %+v", up)
	}
	var b strings.Builder
	cfg.Describe(&b)
	for _, want := range []string{"min_version=1.2 key_exchange=hybrid", "upstream_tls: ca=" + filepath.Join(dir, "ca.crt") + " server_name=venue",
		"key_exchange=x25519"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("describe lacks %q:\n%s", want, b.String())
		}
	}
}

func TestTLSErrors(t *testing.T) {
	dir := tlsFolder(t)
	tests := []struct {
		name string
		yaml string
		path string // the one key path reported
		msg  string // substring of its message
	}{
		{"missing key file", tlsListener + "    tls: {cert: venue.crt, key: gone.key}\n",
			"listeners[0].tls.key", filepath.Join(dir, "gone.key") + ": no such file"},
		{"key of another certificate", tlsListener + "    tls: {cert: venue.crt, key: other.key}\n",
			"listeners[0].tls.key", "does not match"},
		{"certificate is a key", tlsListener + "    tls: {cert: venue.key, key: venue.key}\n",
			"listeners[0].tls.cert", "no PEM certificate"},
		{"no key", tlsListener + "    tls: {cert: venue.crt}\n", "listeners[0].tls.key", "missing"},
		{"unreadable client_ca", tlsListener + "    tls: {cert: venue.crt, key: venue.key, client_ca: nope.crt}\n",
			"listeners[0].tls.client_ca", "nope.crt"},
		{"min_version 1.1", tlsListener + "    tls: {cert: venue.crt, key: venue.key, min_version: \"1.1\"}\n",
			"listeners[0].tls.min_version", "want 1.2 or 1.3"},
		{"unknown key_exchange", tlsListener + "    tls: {cert: venue.crt, key: venue.key, key_exchange: mlkem}\n",
			"listeners[0].tls.key_exchange", "want hybrid or x25519"},
		{"unknown upstream key_exchange", tlsListener + "    upstream_tls: {ca: ca.crt, key_exchange: P-256}\n",
			"listeners[0].upstream_tls.key_exchange", "want hybrid or x25519"},
		{"upstream_tls without ca", tlsListener + "    upstream_tls: {server_name: venue}\n",
			"listeners[0].upstream_tls.ca", "no way to skip verification"},
		{"client cert without key", tlsListener + "    upstream_tls: {ca: ca.crt, cert: venue.crt}\n",
			"listeners[0].upstream_tls.key", "missing"},
		{"tls on udp", "listeners:\n  - name: u\n    mode: udp\n    listen: 127.0.0.1:9000\n    upstream: 127.0.0.1:9001\n    tls: {cert: venue.crt, key: venue.key}\n",
			"listeners[0].tls", "only for modes tcp and raw"},
		{"unknown key", tlsListener + "    tls: {cert: venue.crt, key: venue.key, ca: ca.crt}\n",
			"listeners[0].tls.ca", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadIn(t, dir, tc.yaml)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want config.Errors", err)
			}
			paths := make([]string, len(es))
			for i, e := range es {
				paths[i] = e.Path
			}
			if !slices.Equal(paths, []string{tc.path}) {
				t.Fatalf("paths %v, want [%s]; errors:\n%v", paths, tc.path, err)
			}
			if !strings.Contains(es[0].Msg, tc.msg) || !strings.HasPrefix(es[0].Where, filepath.Join(dir, "relay.yaml")+":") {
				t.Errorf("error %q, want one at relay.yaml:N containing %q", es[0].Error(), tc.msg)
			}
		})
	}
}
