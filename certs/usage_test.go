package certs

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestIssueRefusesAHostThatIsNoName: a -host entry that is neither an IP
// address nor a DNS name ("10.0.0.1:443", "venue local") was written into
// the certificate as a DNS name no client ever asks for, and the handshake
// failed at the box office, far from the typo. A mistyped IPv4 address
// ("10.0.0.300", "192.168.1") is no DNS name either (a name's last label
// is never all digits, RFC 3696): it went in as one.
func TestIssueRefusesAHostThatIsNoName(t *testing.T) {
	ca := newCA(t, t.TempDir())
	for _, h := range []string{"10.0.0.1:443", "venue local", "https://venue.example", "venue/1", "10.0.0.300", "300.1.1.1", "192.168.1", "10.0.0.1."} {
		_, _, err := ca.Issue(KindServer, Request{Name: "venue", Hosts: []string{h}, NotAfter: time.Now().Add(time.Hour)})
		if err == nil || !strings.Contains(err.Error(), `"`+h+`"`) || !strings.Contains(err.Error(), "neither an IP address nor a DNS name") {
			t.Errorf("host %q: err %v, want one naming it", h, err)
		}
	}
	for _, h := range []string{"10.0.0.1", "fd00::1", "venue.local", "*.venue.example", "VENUE-1", "venue_1", "3com.example", "10.0.0.1.venue.lan"} {
		if _, _, err := ca.Issue(KindServer, Request{Name: "venue", Hosts: []string{h}, NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Errorf("host %q: %v", h, err)
		}
	}
}

// TestLoadRefusesACertificateForTheOtherEnd: a client certificate on a
// listener (or a server one as upstream_tls.cert) was loaded without a
// word, and every peer refused it in the handshake ("certificate specifies
// an incompatible key usage"), logged at the other end. It is now an error
// at the key that names the file, saying which certificate to issue.
func TestLoadRefusesACertificateForTheOtherEnd(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	clientCrt, clientKey := issue(t, ca, dir, "boxoffice-1", KindClient)
	serverCrt, serverKey := issue(t, ca, dir, "venue", KindServer)
	caFile := filepath.Join(dir, "ca.crt")

	_, err := LoadServer(ServerFiles{Cert: clientCrt, Key: clientKey})
	var fe *FileError
	if !errors.As(err, &fe) || fe.Key != "cert" || fe.File != clientCrt || !strings.Contains(err.Error(), "relay cert server") {
		t.Errorf("client certificate on a listener: %v", err)
	}
	_, err = LoadClient(ClientFiles{CA: caFile, Cert: serverCrt, Key: serverKey})
	if !errors.As(err, &fe) || fe.Key != "cert" || fe.File != serverCrt || !strings.Contains(err.Error(), "relay cert client") {
		t.Errorf("server certificate as a client's: %v", err)
	}
	if _, err := LoadServer(ServerFiles{Cert: serverCrt, Key: serverKey, ClientCA: caFile}); err != nil {
		t.Error(err)
	}
	if _, err := LoadClient(ClientFiles{CA: caFile, Cert: clientCrt, Key: clientKey}); err != nil {
		t.Error(err)
	}
}
