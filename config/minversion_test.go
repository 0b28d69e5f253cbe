package config

import (
	"crypto/tls"
	"testing"
)

// TestMinVersionAsANumber: min_version: 1.2 written without quotes, as a
// TLS version is usually written, is the version 1.2. YAML reads it as a
// number, and the key refused it ("want text, got the number 1.2") without
// saying that quotes would do.
func TestMinVersionAsANumber(t *testing.T) {
	dir := tlsFolder(t)
	for _, tc := range []struct {
		value string
		want  uint16
	}{{"1.2", tls.VersionTLS12}, {"1.3", tls.VersionTLS13}, {`"1.2"`, tls.VersionTLS12}, {"1.30", tls.VersionTLS13}} {
		cfg, err := loadIn(t, dir, tlsListener+"    tls: {cert: venue.crt, key: venue.key, min_version: "+tc.value+"}\n")
		if err != nil {
			t.Errorf("min_version: %s: %v", tc.value, err)
			continue
		}
		if got := cfg.Listeners[0].TLS.MinVersion; got != tc.want {
			t.Errorf("min_version: %s gives %x, want %x", tc.value, got, tc.want)
		}
	}
	wantProblem(t, tlsListener+"    tls: {cert: venue.crt, key: venue.key, min_version: 1.1}\n",
		"listeners[0].tls.min_version", `unknown version "1.1" (want 1.2 or 1.3)`)
	wantProblem(t, tlsListener+"    tls: {cert: venue.crt, key: venue.key, min_version: true}\n",
		"listeners[0].tls.min_version", "want a version like 1.3, got true")
}
