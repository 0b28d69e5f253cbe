package lint

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/config"
)

const (
	web     = "  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"10.0.0.5:80\"}\n"
	cms     = "  - {name: cms, mode: tcp, listen: \"127.0.0.1:8081\", upstream: \"10.0.0.5:81\"}\n"
	ftp     = "  - {name: files, mode: ftp, listen: \"127.0.0.1:2121\", upstream: \"10.0.0.5:21\", ftp: {data_ports: 40000-40100}}\n"
	vip     = "  - {name: vip, mode: tcp, listen: \"198.51.100.100:80\", upstream: \"10.0.0.5:80\"}\n"
	vipFree = "  - {name: vip, mode: tcp, listen: \"198.51.100.100:80\", upstream: \"10.0.0.5:80\", freebind: true}\n"
	own     = "  - {name: own, mode: udp, listen: \"198.51.100.1:8100-8101\", upstream: \"10.0.0.6:8100-8101\"}\n"
	wild    = "  - {name: any, mode: tcp, listen: \"0.0.0.0:81\", upstream: \"10.0.0.5:81\"}\n"
	ftpL    = "  - {name: files, mode: ftp, listen: \"127.0.0.1:2121\", upstream: \"10.0.0.5:21\", ftp: {data_ports: 20000-20100}}\n"
)

func TestCheck(t *testing.T) {
	linux := Kernel{EphemeralFirst: 32768, EphemeralLast: 60999}
	box := Kernel{EphemeralFirst: 32768, EphemeralLast: 60999,
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.51.100.1")}}
	tests := []struct {
		name      string
		listeners string
		hba       string // "": no acl section
		kernel    Kernel
		want      []string
	}{
		{"no acl", web, "", linux,
			[]string{"acl: no acl section: every source address may connect to every listener"}},
		{"quiet", web + cms, "host all 10.0.0.0/8 allow\n", linux, nil},
		{"every listener named", web + cms, "host web 10.0.0.0/8 allow\nhost cms 10.0.0.0/8 allow\n", linux, nil},
		{"acl without rules", web, "# nothing yet\n", linux,
			[]string{"acl.file: relay_hba.conf allows no source: every source is rejected on every listener"}},
		{"acl of only rejects", web, "host all 10.0.0.0/8 reject\n", linux,
			[]string{"acl.file: relay_hba.conf allows no source: every source is rejected on every listener"}},
		{"listener no rule names", web + cms, "host web 10.0.0.0/8 allow\n", linux,
			[]string{`listeners[1]: no rule in relay_hba.conf names listener "cms" (or all): every source is rejected on it, while other listeners have rules`}},
		{"data ports in the ephemeral range", ftp, "host all all allow\n", linux,
			[]string{"listeners[0].ftp.data_ports: 40000-40100 overlaps the kernel's ephemeral port range 32768-60999 (net.ipv4.ip_local_port_range): outgoing connections can take data ports, and clients then get 425"}},
		{"data ports below it", ftpL, "host all all allow\n", linux, nil},
		{"range unknown", ftp, "host all all allow\n", Kernel{}, nil},
		{"address of another box", vip, "host all all allow\n", box,
			[]string{"listeners[0].listen: 198.51.100.100 is not an address of this box: the listener cannot bind until it has it; on the backup of an HA pair set freebind: true"}},
		{"address of another box, freebind", vipFree, "host all all allow\n", box, nil},
		{"address of this box", own, "host all all allow\n", box, nil},
		{"wildcard and loopback", wild + web, "host all all allow\n", box, nil},
		{"addresses unknown", vip, "host all all allow\n", linux, nil},
		// A wildcard listener whose upstream is this box's own interface
		// address and its own port: every connection loops through the
		// relay. config catches loopback and the listen IP only.
		{"upstream on this box's address and the listen port", "  - {name: loop, mode: tcp, listen: \"0.0.0.0:18900-18901\", upstream: [\"10.0.0.5:18900-18901\", \"198.51.100.1:18900-18901\"]}\n", "host all all allow\n", box,
			[]string{"listeners[0].upstream: 198.51.100.1:18900 is an address of this box on this listener's own port (0.0.0.0:18900): every connection would loop back into the relay"}},
		{"upstream on this box's address, another port", "  - {name: fwd, mode: tcp, listen: \"0.0.0.0:18900\", upstream: \"198.51.100.1:80\"}\n", "host all all allow\n", box, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := "listeners:\n" + tt.listeners
			if tt.hba != "" {
				yaml = "acl: {file: relay_hba.conf}\n" + yaml
			}
			cfg, err := config.Parse(strings.NewReader(yaml), "relay.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var list *acl.List
			if tt.hba != "" {
				list, err = acl.Options{Listeners: cfg.Names()}.Parse(strings.NewReader(tt.hba), "relay_hba.conf")
				if err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, w := range Check(cfg, list, tt.kernel) {
				got = append(got, w.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestParseEphemeral(t *testing.T) {
	for in, want := range map[string]Kernel{
		"32768\t60999\n": {EphemeralFirst: 32768, EphemeralLast: 60999},
		"1024 65535":     {EphemeralFirst: 1024, EphemeralLast: 65535},
		"":               {},
		"60999 32768\n":  {},
		"x y":            {},
	} {
		if got := parseEphemeral([]byte(in)); got.EphemeralFirst != want.EphemeralFirst || got.EphemeralLast != want.EphemeralLast {
			t.Errorf("parseEphemeral(%q) = %v, want %v", in, got, want)
		}
	}
}
