package config

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writeConfig writes yaml to a temporary relay.yaml and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const minimal = "listeners:\n  - name: web\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream: 10.0.0.5:80\n"

func TestDefaults(t *testing.T) {
	cfg, err := parseString(t, minimal+"  - name: rtb\n    mode: udp\n    listen: :8100\n    upstream: 10.0.0.6:8100\n"+
		"  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 30000-30009\n"+
		"  - name: p\n    mode: raw\n    listen: :10001\n    upstream: 10.0.0.7:10001\n")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:          "t.yaml",
		Log:           Log{Level: zerolog.InfoLevel, Format: "auto"},
		Admin:         Admin{Listen: "127.0.0.1:9090"},
		ShutdownGrace: 30 * time.Second,
		Listeners: []Listener{{
			Name: "web", Mode: ModeTCP, ListenSpec: "0.0.0.0:80", UpstreamSpec: "10.0.0.5:80",
			Listen: []string{"0.0.0.0:80"}, Upstreams: [][]string{{"10.0.0.5:80"}},
			ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConns: 10000,
		}, {
			Name: "rtb", Mode: ModeUDP, ListenSpec: ":8100", UpstreamSpec: "10.0.0.6:8100",
			Listen: []string{":8100"}, Upstreams: [][]string{{"10.0.0.6:8100"}},
			UDP: UDP{SessionTimeout: 60 * time.Second, MaxSessions: 4096, UnconfirmedTimeout: 5 * time.Second,
				MaxSessionsPerSource: 256, ReadBuffer: 4 << 20, WriteBuffer: 4 << 20},
		}, {
			Name: "f", Mode: ModeFTP, ListenSpec: ":21", UpstreamSpec: "10.0.0.5:21",
			Listen: []string{":21"}, Upstreams: [][]string{{"10.0.0.5:21"}},
			ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConns: 10000,
			FTP: FTP{DataPorts: [2]uint16{30000, 30009}, DataTimeout: 30 * time.Second},
		}, {
			Name: "p", Mode: ModeRaw, ListenSpec: ":10001", UpstreamSpec: "10.0.0.7:10001",
			Listen: []string{":10001"}, Upstreams: [][]string{{"10.0.0.7:10001"}},
			ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConns: 10000,
			Raw: Raw{QueueTimeout: 30 * time.Second, UserTimeout: 10 * time.Second},
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestDefaultsSectionAndOverrides(t *testing.T) {
	cfg, err := parseString(t, "defaults:\n  connect_timeout: 2s\n  idle_timeout: 10m\n  max_conns: 0\n"+minimal+
		"    connect_timeout: 750ms\n  - name: rtb\n    mode: udp\n    listen: :8100\n    upstream: 10.0.0.6:8100\n"+
		"    udp:\n      read_buffer: 8MiB\n      write_buffer: 262144\n      session_timeout: 2m\n      max_sessions: 10\n")
	if err != nil {
		t.Fatal(err)
	}
	web := cfg.Lookup("web")
	if web.ConnectTimeout != 750*time.Millisecond || web.IdleTimeout != 10*time.Minute || web.MaxConns != 0 {
		t.Errorf("web: connect %v idle %v max_conns %d; want 750ms (own), 10m and 0 (defaults section)",
			web.ConnectTimeout, web.IdleTimeout, web.MaxConns)
	}
	want := UDP{SessionTimeout: 2 * time.Minute, MaxSessions: 10, UnconfirmedTimeout: 5 * time.Second,
		MaxSessionsPerSource: 1, ReadBuffer: 8 << 20, WriteBuffer: 262144}
	if got := cfg.Lookup("rtb").UDP; got != want {
		t.Errorf("rtb udp = %+v, want %+v", got, want)
	}
	if cfg.Lookup("nope") != nil {
		t.Error("Lookup of an undefined name is not nil")
	}
}

func TestAdminListenAbsentEmptyNull(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"absent", "", DefaultAdminListen},
		{"section without listen", "admin: {}\n", DefaultAdminListen},
		{"empty string", "admin:\n  listen: ''\n", ""},
		{"null", "admin:\n  listen:\n", ""},
		{"set", "admin:\n  listen: '[::1]:9100'\n", "[::1]:9100"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseString(t, tt.yaml+minimal)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Admin.Listen != tt.want {
				t.Errorf("Admin.Listen = %q, want %q", cfg.Admin.Listen, tt.want)
			}
		})
	}
}

// TestAdminHosts: admin.hosts comes back as admin compares it (lower case,
// no trailing dot), a single name is a list of one, and relay check's
// description shows it.
func TestAdminHosts(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"absent", "", nil},
		{"one name as text", "admin:\n  hosts: Status.Venue.Example.\n", []string{"status.venue.example"}},
		{"list", "admin: {hosts: [status.venue.example, prometheus-target]}\n", []string{"status.venue.example", "prometheus-target"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseString(t, tt.yaml+minimal)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Admin.Hosts, tt.want) {
				t.Errorf("Admin.Hosts = %q, want %q", cfg.Admin.Hosts, tt.want)
			}
			var b strings.Builder
			if err := cfg.Describe(&b); err != nil {
				t.Fatal(err)
			}
			if line := "\nadmin.hosts: " + strings.Join(tt.want, ", ") + "\n"; strings.Contains(b.String(), line) != (tt.want != nil) {
				t.Errorf("description %s: want %q only when hosts are set", b.String(), strings.TrimSpace(line))
			}
		})
	}
}

func TestUpstreamMapping(t *testing.T) {
	tests := []struct {
		name, listen, upstream string
		wantListen             []string
		wantUp                 [][]string
	}{
		{
			name: "range 1:1", listen: "0.0.0.0:20000-20001", upstream: "10.0.0.5:30000-30001",
			wantListen: []string{"0.0.0.0:20000", "0.0.0.0:20001"},
			wantUp:     [][]string{{"10.0.0.5:30000"}, {"10.0.0.5:30001"}},
		},
		{
			name: "range to one address", listen: "0.0.0.0:8000-8002", upstream: "10.0.0.5:80",
			wantListen: []string{"0.0.0.0:8000", "0.0.0.0:8001", "0.0.0.0:8002"},
			wantUp:     [][]string{{"10.0.0.5:80"}, {"10.0.0.5:80"}, {"10.0.0.5:80"}},
		},
		{
			name: "failover list, mixed", listen: "'[::]:8100-8101'", upstream: "['[fd00::6]:9100-9101', 10.0.0.7:9000]",
			wantListen: []string{"[::]:8100", "[::]:8101"},
			wantUp:     [][]string{{"[fd00::6]:9100", "10.0.0.7:9000"}, {"[fd00::6]:9101", "10.0.0.7:9000"}},
		},
		{
			name: "single port, range of one", listen: "127.0.0.1:80", upstream: "10.0.0.5:8080-8080",
			wantListen: []string{"127.0.0.1:80"},
			wantUp:     [][]string{{"10.0.0.5:8080"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseString(t, "listeners:\n  - name: a\n    mode: udp\n    listen: "+tt.listen+
				"\n    upstream: "+tt.upstream+"\n")
			if err != nil {
				t.Fatal(err)
			}
			l := cfg.Listeners[0]
			if !reflect.DeepEqual(l.Listen, tt.wantListen) || !reflect.DeepEqual(l.Upstreams, tt.wantUp) {
				t.Errorf("Listen %q Upstreams %q; want %q %q", l.Listen, l.Upstreams, tt.wantListen, tt.wantUp)
			}
		})
	}
}

func TestFTPSection(t *testing.T) {
	cfg, err := parseString(t, "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n"+
		"    ftp:\n      data_ports: 20002-29999\n      public_ip: 203.0.113.7\n      trust_server_ip: true\n      data_timeout: 1m\n")
	if err != nil {
		t.Fatal(err)
	}
	want := FTP{DataPorts: [2]uint16{20002, 29999}, PublicIP: netip.MustParseAddr("203.0.113.7"),
		TrustServerIP: true, DataTimeout: time.Minute}
	if got := cfg.Listeners[0].FTP; got != want {
		t.Errorf("FTP = %+v, want %+v", got, want)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	path := writeConfig(t, "log:\n  level: info\nshutdown_grace: 30s\n"+minimal)
	cfg, err := Load(LoadOptions{Path: path, Environ: []string{
		"RELAY_LOG__LEVEL=debug",
		"RELAY_SHUTDOWN_GRACE=5s",
		"RELAY_DEFAULTS__MAX_CONNS=7",
		"RELAY_ADMIN__LISTEN=",
		"RELAY_ACL__FILE=hba.conf", // a section the file does not have
		"HOME=/root",               // not ours
	}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != zerolog.DebugLevel {
		t.Errorf("Log.Level = %v, want debug from RELAY_LOG__LEVEL", cfg.Log.Level)
	}
	if cfg.ShutdownGrace != 5*time.Second {
		t.Errorf("ShutdownGrace = %v, want 5s from RELAY_SHUTDOWN_GRACE", cfg.ShutdownGrace)
	}
	if cfg.Listeners[0].MaxConns != 7 {
		t.Errorf("MaxConns = %d, want 7 from RELAY_DEFAULTS__MAX_CONNS", cfg.Listeners[0].MaxConns)
	}
	if cfg.Admin.Listen != "" {
		t.Errorf("Admin.Listen = %q, want empty from RELAY_ADMIN__LISTEN=", cfg.Admin.Listen)
	}
	if cfg.ACLFile != "hba.conf" {
		t.Errorf("ACLFile = %q, want hba.conf from RELAY_ACL__FILE", cfg.ACLFile)
	}
}

func TestEnvironmentErrors(t *testing.T) {
	path := writeConfig(t, minimal)
	_, err := Load(LoadOptions{Path: path, Environ: []string{
		"RELAY_LOG__LEVLE=debug",
		"RELAY_SHUTDOWN_GRACE=soon",
		"RELAY_LISTENERS__0__LISTEN=:81",
	}})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v, want config.Errors", err)
	}
	for _, want := range []string{
		"environment RELAY_LOG__LEVLE: log.levle: unknown key (did you mean level?)",
		"environment RELAY_LISTENERS__0__LISTEN: listeners cannot be set from the environment",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors do not contain %q:\n%v", want, err)
		}
	}
	// A bad value is found only once the unknown key is gone.
	_, err = Load(LoadOptions{Path: path, Environ: []string{"RELAY_SHUTDOWN_GRACE=soon"}})
	if want := `environment RELAY_SHUTDOWN_GRACE: shutdown_grace: want a duration like 30s, 5m or 1h, got "soon"`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestFlagOverrides(t *testing.T) {
	path := writeConfig(t, "log:\n  level: warn\n  format: json\nadmin:\n  listen: 127.0.0.1:9191\n"+minimal)
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	flags := RegisterFlags(fs)
	if err := fs.Parse([]string{"-log-level", "error", "-shutdown-grace=1m"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(LoadOptions{Path: path, Environ: []string{"RELAY_LOG__LEVEL=debug"}, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != zerolog.ErrorLevel {
		t.Errorf("Log.Level = %v, want error: the flag beats the file and the environment", cfg.Log.Level)
	}
	if cfg.Log.Format != "json" || cfg.Admin.Listen != "127.0.0.1:9191" {
		t.Errorf("format %q admin %q: flags not given must not override the file", cfg.Log.Format, cfg.Admin.Listen)
	}
	if cfg.ShutdownGrace != time.Minute {
		t.Errorf("ShutdownGrace = %v, want 1m", cfg.ShutdownGrace)
	}

	fs = flag.NewFlagSet("relay", flag.ContinueOnError)
	flags = RegisterFlags(fs)
	if err := fs.Parse([]string{"-admin-listen=", "-log-format", "xml"}); err != nil {
		t.Fatal(err)
	}
	_, err = Load(LoadOptions{Path: path, Environ: []string{}, Flags: flags})
	if want := `flag -log-format: log.format: unknown format "xml" (want auto, json or console)`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	_, err := Load(LoadOptions{Path: missing, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), missing) || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing file: error %v, want one line naming %s", err, missing)
	}
	if _, err := Load(LoadOptions{Environ: []string{}}); err == nil {
		t.Error("no path: no error")
	}
	if os.Getuid() != 0 { // root reads anything
		unreadable := writeConfig(t, minimal)
		if err := os.Chmod(unreadable, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(LoadOptions{Path: unreadable, Environ: []string{}}); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable file: error %v", err)
		}
	}
}

func TestYAMLSyntaxErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"bad indentation", "log:\n  level: info\n   format: json\n", "t.yaml:3: YAML: mapping values are not allowed in this context (this line is indented 3 spaces, log.level on line 2 is indented 2)"},
		{"unclosed list", "listeners: [a, b\n", "t.yaml:1: YAML: did not find expected ',' or ']'"},
		{"tab indent", "log:\n\tlevel: info\n", "t.yaml:2: YAML: found character that cannot start any token (indent with spaces, not tabs)"},
		{"top level list", "- name: a\n", "t.yaml:1: the top level must be a mapping of keys (log:, listeners:, ...)"},
		{"unknown anchor", "log: *nope\n", "t.yaml:1: YAML: unknown anchor 'nope' referenced"},
		// The parser names the start of the list it was in (as line 2, zero-based);
		// the line at fault is the one indented 3 spaces, next to a key at 4.
		{"key indented less than its siblings", "log:\n  level: info\nlisteners:\n  - name: web\n    mode: tcp\n   listen: 0.0.0.0:80\n    upstream: 10.0.0.5:80\n",
			"t.yaml:6: YAML: did not find expected '-' indicator (this line is indented 3 spaces, listeners[0].mode on line 5 is indented 4)"},
		{"key indented more than its siblings", "listeners:\n  - name: web\n     listen: 0.0.0.0:80\n    upstream: 10.0.0.5:80\n",
			"t.yaml:3: YAML: mapping values are not allowed in this context (this line is indented 5 spaces, listeners[0].name on line 2 is indented 4)"},
		// The parser runs on to where it wanted the ']' (and names line 4);
		// the line that opened the list is the useful one.
		{"list not closed", "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream: [10.0.0.5:80,\n      10.0.0.6:80\n  - name: b\n    mode: tcp\n",
			"t.yaml:5: YAML: did not find expected ',' or ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseString(t, tt.yaml)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	_, err := parseString(t, "x-common: &common\n  mode: tcp\n  connect_timeout: 1s\nlisteners:\n"+
		"  - <<: *common\n    name: a\n    listen: :80\n    upstream: 10.0.0.5:80\n")
	// x-common is not a key of the schema: anchors must live inside it.
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != "x-common" || es[0].Where != "t.yaml:1" {
		t.Fatalf("error %v, want one unknown key x-common at t.yaml:1", err)
	}
	_, err = parseString(t, "listeners:\n  - &a\n    name: a\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n"+
		"  - <<: *a\n    name: b\n    listen: :81\n    upstrem: x\n")
	if !errors.As(err, &es) || len(es) != 1 || es[0].Where != "t.yaml:10" {
		t.Fatalf("error %v, want one unknown key at t.yaml:10", err)
	}
}

func TestMode(t *testing.T) {
	for m, want := range map[Mode]string{ModeTCP: "tcp", ModeFTP: "tcp", ModeRaw: "tcp", ModeUDP: "udp"} {
		if got := m.Proto(); got != want {
			t.Errorf("%s.Proto() = %q, want %q", m, got, want)
		}
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int{"4MiB": 4 << 20, "512KiB": 512 << 10, "1GiB": 1 << 30, "1MB": 1e6, "4096": 4096, "4096B": 4096, " 2 MiB ": 2 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "4XB", "3GiB", "1.5MiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the whole loader: it must never panic,
// and a valid result must describe itself.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/cayin.yaml", "testdata/ranges.yaml", "testdata/ipv6.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(minimal + "    upstrem: x\n"))
	f.Add([]byte("80: x\nlisteners: {a: b}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(bytes.NewReader(b), "f.yaml")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		var out bytes.Buffer
		if err := cfg.Describe(&out); err != nil {
			t.Fatal(err)
		}
		for _, l := range cfg.Listeners {
			if len(l.Listen) == 0 || len(l.Upstreams) != len(l.Listen) {
				t.Fatalf("listener %s: %d listen, %d upstream lists", l.Name, len(l.Listen), len(l.Upstreams))
			}
		}
	})
}

func TestReloadHardStopAfter(t *testing.T) {
	cfg, err := Load(LoadOptions{Path: writeConfig(t, minimal)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Reload.HardStopAfter != 0 {
		t.Errorf("default reload.hard_stop_after = %v, want 0 (never cut)", cfg.Reload.HardStopAfter)
	}
	cfg, err = Load(LoadOptions{Path: writeConfig(t, "reload: {hard_stop_after: 2h}\n"+minimal)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Reload.HardStopAfter != 2*time.Hour {
		t.Errorf("reload.hard_stop_after = %v, want 2h", cfg.Reload.HardStopAfter)
	}
	var b strings.Builder
	if err := cfg.Describe(&b); err != nil || !strings.Contains(b.String(), "reload.hard_stop_after: 2h") {
		t.Errorf("Describe does not show it: %v\n%s", err, b.String())
	}
}

// TestLoadNamesAFolderOnce: -config naming a folder (a slip for the file in
// it) is one error that names the path once; it said "config: read DIR:
// read DIR: is a directory".
func TestLoadNamesAFolderOnce(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(LoadOptions{Path: dir, Environ: []string{}})
	if err == nil || strings.Count(err.Error(), dir) != 1 || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("Load(folder) = %v, want one error naming %s once", err, dir)
	}
}
