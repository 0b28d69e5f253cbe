package lint

import (
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/config"
)

// TestRulesThatNeverMatch: an ACL rule that names a listener it can never
// decide for (a hostssl rule on a listener that verifies no client
// certificate, a tcp rule on a udp listener, a udp rule on a TCP one) is a
// warning naming its line, and does not count as naming the listener. A
// listener named only by hostssl rules was warned about as named by no
// rule (a false warning that failed `relay check -strict` on the README's
// tunnel layout beside any other listener).
func TestRulesThatNeverMatch(t *testing.T) {
	const (
		tunnel = "  - {name: tunnel, mode: tcp, listen: \"127.0.0.1:10443\", upstream: \"10.0.0.5:10001\"}\n"
		rtb    = "  - {name: rtb, mode: udp, listen: \"127.0.0.1:8100\", upstream: \"10.0.0.6:8100\"}\n"
	)
	tests := []struct {
		name      string
		listeners string
		clientCA  bool // tunnel verifies client certificates
		hba       string
		want      []string
	}{
		{"hostssl names a TLS listener", tunnel + web, true,
			"hostssl tunnel all allow cn=boxoffice-*\nhost web all allow\n", nil},
		{"hostssl on a listener without client_ca", tunnel + web, false,
			"hostssl tunnel all allow cn=boxoffice-*\nhost web all allow\n", []string{
				`acl.file: relay_hba.conf:1: hostssl rule names listener "tunnel", which verifies no client certificate (no tls.client_ca): it never matches there`,
				`listeners[0]: no rule in relay_hba.conf names listener "tunnel" (or all): every source is rejected on it, while other listeners have rules`,
			}},
		{"tcp rule on a udp listener", rtb + web, false,
			"tcp rtb,web all allow\n", []string{
				`acl.file: relay_hba.conf:1: tcp rule names listener "rtb", which takes UDP: it never matches there`,
				`listeners[0]: no rule in relay_hba.conf names listener "rtb" (or all): every source is rejected on it, while other listeners have rules`,
			}},
		{"udp rule on a tcp listener", rtb + web, false,
			"udp rtb,web all allow\n", []string{
				`acl.file: relay_hba.conf:1: udp rule names listener "web", which takes TCP: it never matches there`,
				`listeners[1]: no rule in relay_hba.conf names listener "web" (or all): every source is rejected on it, while other listeners have rules`,
			}},
		{"host rules match both", rtb + web, false, "host rtb,web all allow\n", nil},
		{"hostssl on the admin endpoint", web, false, "hostssl admin all allow\nhost all all allow\n", []string{
			`acl.file: relay_hba.conf:1: hostssl rule names listener "admin", which verifies no client certificate (no tls.client_ca): it never matches there`,
		}},
		{"a hostssl all rule covers no plain listener", web, false, "hostssl all all allow\n", []string{
			`listeners[0]: no rule in relay_hba.conf names listener "web" (or all): every source is rejected on it, while other listeners have rules`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(strings.NewReader("acl: {file: relay_hba.conf}\nlisteners:\n"+tt.listeners), "relay.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if l := cfg.Lookup("tunnel"); l != nil {
				// config checks the files; lint reads only whether they are set.
				l.TLS = &certs.ServerFiles{Cert: "venue.crt", Key: "venue.key"}
				if tt.clientCA {
					l.TLS.ClientCA = "ca.crt"
				}
			}
			if got := warnings(t, cfg, tt.hba); !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// warnings returns what Check says of cfg with the ACL file hba, read as
// relay_hba.conf.
func warnings(t *testing.T, cfg *config.Config, hba string) []string {
	t.Helper()
	list, err := acl.Options{Listeners: cfg.ACLNames()}.Parse(strings.NewReader(hba), "relay_hba.conf")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range Check(cfg, list, Kernel{}) {
		got = append(got, w.String())
	}
	return got
}
