package examples

import (
	"bytes"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/relay/acl"
	"github.com/edgerelay/relay/certs"
	"github.com/edgerelay/relay/config"
)

// loaded is an example config with its ACL, read the way the daemon reads
// them: the ACL path relative to the config's folder.
type loaded struct {
	cfg *config.Config
	acl *acl.List
}

// load reads name from this folder with no environment or flag overrides.
// The box's interfaces are fixed so samehost rules decide the same anywhere.
func load(t *testing.T, name string) loaded {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{Path: name, Environ: []string{}})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if cfg.ACLFile == "" || filepath.IsAbs(cfg.ACLFile) {
		t.Fatalf("%s: acl.file %q, want a path relative to the config", name, cfg.ACLFile)
	}
	interfaces := func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("192.168.1.2/24")}, nil
	}
	list, err := acl.LoadFile(cfg.ACLPath, acl.Options{Interfaces: interfaces, Listeners: cfg.Names()})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return loaded{cfg, list}
}

// TestEveryExampleLoads also checks that FS holds exactly the files of this
// folder that a user would install.
func TestEveryExampleLoads(t *testing.T) {
	var embedded []string
	err := fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded = append(embedded, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"box-office.yaml", "box-office_hba.conf", "cayin.yaml", "cayin_hba.conf",
		"theatre-manager.yaml", "theatre-manager_hba.conf", "venue-tunnel.yaml", "venue-tunnel_hba.conf"}
	if !slices.Equal(embedded, want) {
		t.Fatalf("FS holds %q, want %q", embedded, want)
	}
	for _, name := range want {
		if filepath.Ext(name) == ".yaml" {
			load(t, name)
		}
	}
	onDisk, err := os.ReadFile("cayin.yaml")
	if err != nil || !bytes.Equal(onDisk, CAYIN) {
		t.Errorf("CAYIN differs from cayin.yaml (%v)", err)
	}
}

// port describes what a listener must bind, as the seeds list it.
type port struct {
	listener string
	mode     config.Mode
	first    string // first resolved listen address
	count    int    // ports bound
}

func checkPorts(t *testing.T, cfg *config.Config, want []port) {
	t.Helper()
	if len(cfg.Listeners) != len(want) {
		t.Errorf("%d listeners, want %d", len(cfg.Listeners), len(want))
	}
	for _, w := range want {
		l := cfg.Lookup(w.listener)
		if l == nil {
			t.Errorf("no listener %s", w.listener)
			continue
		}
		if l.Mode != w.mode || len(l.Listen) != w.count || l.Listen[0] != w.first {
			t.Errorf("%s: mode %s, %d ports from %s; want %s, %d from %s",
				w.listener, l.Mode, len(l.Listen), l.Listen[0], w.mode, w.count, w.first)
		}
	}
}

// decision is one ACL query and its expected answer.
type decision struct {
	listener string
	proto    acl.Proto
	addr     string
	allow    bool
}

func checkDecisions(t *testing.T, list *acl.List, want []decision) {
	t.Helper()
	for _, w := range want {
		d := list.Decide(w.listener, w.proto, netip.MustParseAddr(w.addr))
		if d.Allow != w.allow {
			t.Errorf("%s %s from %s: allow=%t, want %t (%s)", w.proto, w.listener, w.addr, d.Allow, w.allow,
				list.Explain(w.listener, w.proto, netip.MustParseAddr(w.addr)))
		}
	}
}

func TestCAYIN(t *testing.T) {
	ex := load(t, "cayin.yaml")
	checkPorts(t, ex.cfg, []port{
		{"cms-http", config.ModeTCP, "0.0.0.0:80", 1},
		{"cms-https", config.ModeTCP, "0.0.0.0:443", 1},
		{"supermonitor", config.ModeTCP, "0.0.0.0:20000", 1},
		{"cms-pro", config.ModeTCP, "0.0.0.0:20001", 1},
		{"cms-ftp", config.ModeFTP, "0.0.0.0:21", 1},
		{"rtb", config.ModeUDP, "0.0.0.0:8100", 127},
	})
	if ftp := ex.cfg.Lookup("cms-ftp"); ftp != nil && ftp.FTP.DataPorts != [2]uint16{20002, 29999} {
		t.Errorf("cms-ftp data ports %v, want 20002-29999 (20001 is cms-pro)", ftp.FTP.DataPorts)
	}
	if rtb := ex.cfg.Lookup("rtb"); rtb != nil && rtb.Upstreams[126][0] != "10.0.0.6:8226" {
		t.Errorf("rtb: 8226 goes to %v, want 10.0.0.6:8226", rtb.Upstreams[126])
	}
	checkDecisions(t, ex.acl, []decision{
		{"cms-ftp", acl.ProtoTCP, "192.168.1.40", true},
		{"rtb", acl.ProtoUDP, "10.8.3.4", true},
		{"supermonitor", acl.ProtoTCP, "192.168.1.99", false}, // retired player, before the LAN rule
		{"cms-pro", acl.ProtoTCP, "198.51.100.20", true},
		{"cms-ftp", acl.ProtoTCP, "198.51.100.20", false},
		{"rtb", acl.ProtoUDP, "203.0.113.7", true},
		{"cms-http", acl.ProtoTCP, "203.0.113.7", false}, // the encoder sends streams only
		{"cms-http", acl.ProtoTCP, "127.0.0.1", true},
		{"cms-http", acl.ProtoTCP, "2001:db8::1", false},
	})
}

func TestTheatreManager(t *testing.T) {
	ex := load(t, "theatre-manager.yaml")
	checkPorts(t, ex.cfg, []port{
		{"web-http", config.ModeTCP, "0.0.0.0:80", 1},
		{"web-https", config.ModeTCP, "0.0.0.0:443", 1},
		{"tm-rest", config.ModeTCP, "0.0.0.0:5000", 1},
		{"postgres", config.ModeTCP, "0.0.0.0:5432", 1},
		{"ticket-printer", config.ModeRaw, "0.0.0.0:10001", 1},
	})
	if p := ex.cfg.Lookup("ticket-printer"); p != nil && !p.Raw.Exclusive {
		t.Error("ticket-printer is not exclusive")
	}
	if w := ex.cfg.Lookup("web-https"); w != nil && !slices.Equal(w.Upstreams[0], []string{"192.168.20.10:443", "192.168.20.11:443"}) {
		t.Errorf("web-https failover list %v", w.Upstreams[0])
	}
	checkDecisions(t, ex.acl, []decision{
		{"web-https", acl.ProtoTCP, "198.51.100.7", true},
		{"web-http", acl.ProtoTCP, "2001:db8::7", true},
		{"tm-rest", acl.ProtoTCP, "192.168.20.10", true},
		{"tm-rest", acl.ProtoTCP, "192.168.20.30", false},
		{"postgres", acl.ProtoTCP, "192.168.20.30", true},
		{"postgres", acl.ProtoTCP, "192.168.20.99", false}, // the kiosk, before the LAN rule
		{"postgres", acl.ProtoTCP, "10.8.0.12", true},
		{"postgres", acl.ProtoTCP, "198.51.100.7", false},
		{"postgres", acl.ProtoTCP, "127.0.0.1", true},
		{"ticket-printer", acl.ProtoTCP, "192.168.20.30", true},
		{"ticket-printer", acl.ProtoTCP, "10.8.1.12", false},
		{"ticket-printer", acl.ProtoTCP, "198.51.100.7", false},
	})
}

// TestBoxOfficeTunnel: the two ends of the tunnel agree (the box office
// trusts the CA that signed the venue's certificate and presents one the
// venue's CA signed), and the venue's ACL decides by certificate name.
func TestBoxOfficeTunnel(t *testing.T) {
	venue := load(t, "venue-tunnel.yaml")
	box := load(t, "box-office.yaml")
	tunnel, printer := venue.cfg.Lookup("tunnel"), box.cfg.Lookup("printer")
	if tunnel == nil || tunnel.TLS == nil || tunnel.TLS.ClientCA == "" || !tunnel.Raw.Exclusive {
		t.Fatalf("venue tunnel listener: %+v", tunnel)
	}
	if printer == nil || printer.UpstreamTLS == nil || printer.UpstreamTLS.Cert == "" || printer.Listen[0] != "127.0.0.1:10001" {
		t.Fatalf("box office printer listener: %+v", printer)
	}
	if _, err := certs.LoadServer(*tunnel.TLS); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.LoadClient(*printer.UpstreamTLS); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cn    string
		allow bool
	}{{"boxoffice-1", true}, {"boxoffice-3", false}, {"", false}, {"intruder", false}} {
		if got := venue.acl.ExplainTLS("tunnel", netip.MustParseAddr("203.0.113.5"), tc.cn); strings.HasPrefix(got, "allow") != tc.allow {
			t.Errorf("cn %q: %s, want allow=%v", tc.cn, got, tc.allow)
		}
	}
}
