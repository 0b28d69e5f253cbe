package lint

import (
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/relay/config"
)

// TestAdminEndpointNoRule: an admin endpoint beyond loopback is judged by
// the ACL file (README, Source ACL); a file whose rules name only
// listeners then refuses it to everyone (403), a Prometheus on the box too,
// and said nothing. On loopback, or with a rule for admin or all, nothing
// is said.
func TestAdminEndpointNoRule(t *testing.T) {
	const warning = `admin.listen: 0.0.0.0:9090 is beyond loopback, so relay_hba.conf decides who may open the admin endpoint, and no rule there names admin (or all): every client gets 403, a Prometheus on this box too`
	for _, tc := range []struct {
		name, admin, hba string
		want             []string
	}{
		{"beyond loopback, no rule", "0.0.0.0:9090", "host web all allow\n", []string{warning}},
		{"every address written :PORT", ":9090", "host web all allow\n", []string{strings.Replace(warning, "0.0.0.0:9090", ":9090", 1)}},
		{"a rule that cannot match it", "0.0.0.0:9090", "host web all allow\nudp admin all allow\n", []string{
			`acl.file: relay_hba.conf:2: udp rule names listener "admin", which takes TCP: it never matches there`, warning}},
		{"a rule for admin", "0.0.0.0:9090", "host web all allow\nhost admin 10.0.0.0/8 allow\n", nil},
		{"a rule for all", "0.0.0.0:9090", "host web all allow\nhost all 127.0.0.1/32 allow\n", nil},
		{"loopback", "127.0.0.1:9090", "host web all allow\n", nil},
		{"off", "", "host web all allow\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse(strings.NewReader("admin: {listen: '"+tc.admin+"'}\nacl: {file: relay_hba.conf}\nlisteners:\n"+web), "relay.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := warnings(t, cfg, tc.hba); !slices.Equal(got, tc.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
