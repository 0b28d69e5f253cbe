package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// parseString parses yaml as the file "t.yaml".
func parseString(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	return Parse(strings.NewReader(yaml), "t.yaml")
}

// problemsOf parses yaml, which must be invalid, and returns its problems.
func problemsOf(t *testing.T, yaml string) Errors {
	t.Helper()
	_, err := parseString(t, yaml)
	if err == nil {
		t.Fatalf("config is valid, want errors:\n%s", yaml)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %v (%T) is not config.Errors", err, err)
	}
	return es
}

// one is a valid tcp listener to put beside the listener under test.
const one = `
  - name: ok
    mode: tcp
    listen: 127.0.0.1:7000
    upstream: 10.0.0.5:7000
`

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		paths []string // exactly the key paths that must be reported
		where string   // Where of the first problem, when known
		msg   string   // substring of the first problem's message
	}{
		{
			name:  "unknown listener key",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: :80\n    upstrem: 10.0.0.5:80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].upstrem"}, where: "t.yaml:5", msg: "did you mean upstream?",
		},
		{
			name:  "unknown top-level key",
			yaml:  "listners: []\nlisteners:" + one,
			paths: []string{"listners"}, where: "t.yaml:1", msg: "did you mean listeners?",
		},
		{
			name:  "unknown key far from any known one",
			yaml:  "log:\n  colour: red\nlisteners:" + one,
			paths: []string{"log.colour"}, where: "t.yaml:2", msg: "known here: format, level",
		},
		{
			name:  "unknown key in a mode section",
			yaml:  "listeners:" + one + "  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 30000-30010\n      pasv_ip: 1.2.3.4\n",
			paths: []string{"listeners[1].ftp.pasv_ip"}, where: "t.yaml:12",
		},
		{
			name:  "listen host is a name",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: localhost:80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, where: "t.yaml:4", msg: "not an IP address",
		},
		{
			name:  "listen port too big",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:99999\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, msg: "above 65535",
		},
		{
			name:  "reversed listen range",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:20010-20001\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, msg: "reversed",
		},
		{
			name:  "upstream range of another length",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:20000-20001\n    upstream: 10.0.0.5:20000-20002\n",
			paths: []string{"listeners[0].upstream"}, where: "t.yaml:5", msg: "has 3 ports but listen",
		},
		{
			name:  "bad entry in an upstream list",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream:\n      - 10.0.0.5:80\n      - 10.0.0.6\n",
			paths: []string{"listeners[0].upstream[1]"}, where: "t.yaml:7", msg: "no port",
		},
		{
			name:  "upstream IPv6 without brackets",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream: fd00::5:80\n",
			paths: []string{"listeners[0].upstream"}, msg: "brackets",
		},
		{
			name:  "upstream port 0",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream: 10.0.0.5:0\n",
			paths: []string{"listeners[0].upstream"}, msg: "port 0",
		},
		{
			name:  "listen port 0",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:0\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, where: "t.yaml:4", msg: "port 0",
		},
		{
			name:  "listen range from port 0",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: 0.0.0.0:0-5\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, msg: "port 0",
		},
		{
			name:  "upstream host not a name",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream: cms_server:80\n",
			paths: []string{"listeners[0].upstream"}, msg: "neither an IP address nor a host name",
		},
		{
			name:  "missing upstream",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n",
			paths: []string{"listeners[0].upstream"}, msg: "missing",
		},
		{
			name:  "missing listen, mode and name",
			yaml:  "listeners:\n  - upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].name", "listeners[0].mode", "listeners[0].listen"},
		},
		{
			name:  "duplicate names",
			yaml:  "listeners:" + one + "  - name: ok\n    mode: udp\n    listen: 0.0.0.0:7000\n    upstream: 10.0.0.5:7000\n",
			paths: []string{"listeners[1].name"}, where: "t.yaml:6", msg: "already used by listeners[0]",
		},
		{
			name:  "name with capitals and underscore",
			yaml:  "listeners:\n  - name: CMS_http\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].name"}, msg: "lowercase letters, digits and '-'",
		},
		{
			name:  "name all is reserved",
			yaml:  "listeners:\n  - name: all\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].name"}, msg: "reserved",
		},
		{
			name:  "name admin is reserved for the admin endpoint's ACL rules",
			yaml:  "listeners:\n  - name: admin\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].name"}, msg: `"admin" is reserved`,
		},
		{
			name:  "unknown mode",
			yaml:  "listeners:\n  - name: a\n    mode: tpc\n    listen: :80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].mode"}, where: "t.yaml:3", msg: `unknown mode "tpc"`,
		},
		{
			name:  "ftp without data_ports",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      trust_server_ip: true\n",
			paths: []string{"listeners[0].ftp.data_ports"}, where: "t.yaml:6", msg: "needs a range",
		},
		{
			name:  "ftp without ftp section",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n",
			paths: []string{"listeners[0].ftp.data_ports"},
		},
		{
			name:  "ftp data_ports reversed",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 20010-20001\n",
			paths: []string{"listeners[0].ftp.data_ports"}, where: "t.yaml:7", msg: "reversed",
		},
		{
			name:  "public_ip not an IP",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 30000-30010\n      public_ip: cms.example\n",
			paths: []string{"listeners[0].ftp.public_ip"}, where: "t.yaml:8", msg: "not an IP address",
		},
		{
			name:  "public_ip unspecified",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 30000-30010\n      public_ip: 0.0.0.0\n",
			paths: []string{"listeners[0].ftp.public_ip"},
		},
		{
			name:  "negative durations",
			yaml:  "shutdown_grace: -1s\nreload: {hard_stop_after: -2s}\ndefaults:\n  connect_timeout: -5s\nlisteners:\n  - name: a\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n    idle_timeout: -1m\n",
			paths: []string{"shutdown_grace", "reload.hard_stop_after", "defaults.connect_timeout", "listeners[0].idle_timeout"},
			where: "t.yaml:1", msg: "must not be negative",
		},
		{
			name:  "zero timeout",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n    connect_timeout: 0s\n",
			paths: []string{"listeners[0].connect_timeout"}, msg: "above zero",
		},
		{
			name:  "duration without unit",
			yaml:  "defaults:\n  idle_timeout: 300\nlisteners:" + one,
			paths: []string{"defaults.idle_timeout"}, where: "t.yaml:2", msg: "no unit",
		},
		{
			name:  "duration that is not one",
			yaml:  "shutdown_grace: soon\nlisteners:" + one,
			paths: []string{"shutdown_grace"}, msg: `got "soon"`,
		},
		{
			name:  "max_conns negative and not a number",
			yaml:  "defaults:\n  max_conns: -1\nlisteners:\n  - name: a\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n    max_conns: lots\n",
			paths: []string{"listeners[0].max_conns"}, where: "t.yaml:8", msg: "whole number",
		},
		{
			// Only the first value of a wrong type was reported: the
			// decoder's errors come joined inside one wrapper.
			name:  "values of the wrong type in two places",
			yaml:  "shutdown_grace: soon\nlisteners:\n  - {name: a, mode: tcp, listen: ':80', upstream: '10.0.0.5:80', max_conns: lots}\n  - {name: b, mode: tcp, listen: ':81', upstream: '10.0.0.5:81', max_conns: many}\n",
			paths: []string{"shutdown_grace", "listeners[0].max_conns", "listeners[1].max_conns"}, where: "t.yaml:1",
		},
		{
			name:  "max_conns negative",
			yaml:  "defaults:\n  max_conns: -1\nlisteners:" + one,
			paths: []string{"defaults.max_conns"}, msg: "at least 0",
		},
		{
			name:  "tcp overlap between listeners",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:80\n    upstream: 10.0.0.5:80\n  - name: b\n    mode: raw\n    listen: 10.1.1.1:80\n    upstream: 10.0.0.6:80\n",
			paths: []string{"listeners[1].listen"}, where: "t.yaml:8", msg: "tcp port 80 is also used by listener a (listeners[0].listen)",
		},
		{
			name:  "tcp range overlap",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: :20000-20005\n    upstream: 10.0.0.5:80\n  - name: b\n    mode: tcp\n    listen: :20004-20010\n    upstream: 10.0.0.6:80\n",
			paths: []string{"listeners[1].listen"}, msg: "tcp ports 20004-20005 are also used",
		},
		{
			name:  "IPv6 any overlaps IPv4 any",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: 0.0.0.0:8100-8226\n    upstream: 10.0.0.6:8100-8226\n  - name: b\n    mode: udp\n    listen: '[::]:8226'\n    upstream: 10.0.0.6:9000\n",
			paths: []string{"listeners[1].listen"}, msg: "udp port 8226",
		},
		{
			name:  "listener inside an ftp data range",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: 0.0.0.0:21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 20001-29999\n  - name: cmd\n    mode: tcp\n    listen: 0.0.0.0:20000-20001\n    upstream: 10.0.0.5:20000-20001\n",
			paths: []string{"listeners[1].listen"}, where: "t.yaml:10", msg: "the ftp data ports of listener f (listeners[0].ftp.data_ports)",
		},
		{
			name:  "ftp data range over its own control port",
			yaml:  "listeners:\n  - name: f\n    mode: ftp\n    listen: 0.0.0.0:2121\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 2100-2200\n",
			paths: []string{"listeners[0].ftp.data_ports"},
		},
		{
			name:  "listener on the admin port",
			yaml:  "admin:\n  listen: 127.0.0.1:9090\nlisteners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:9090\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, msg: "the admin endpoint (admin.listen)",
		},
		{
			name:  "upstream is the listener itself",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:8000-8002\n    upstream:\n      - 10.0.0.5:8000-8002\n      - 127.0.0.1:8000-8002\n",
			paths: []string{"listeners[0].upstream"}, where: "t.yaml:5", msg: "127.0.0.1:8000 is this listener's own address (0.0.0.0:8000)",
		},
		{
			name:  "upstream is the listen IP",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: 10.1.1.1:53\n    upstream: 10.1.1.1:53\n",
			paths: []string{"listeners[0].upstream"}, msg: "loop back",
		},
		{
			name:  "udp section on a tcp listener",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: :80\n    upstream: 10.0.0.5:80\n    udp:\n      max_sessions: 10\n",
			paths: []string{"listeners[0].udp"}, msg: "only for mode udp",
		},
		{
			name:  "tcp settings on a udp listener",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: :80\n    upstream: 10.0.0.5:80\n    max_conns: 5\n    idle_timeout: 1m\n",
			paths: []string{"listeners[0].max_conns", "listeners[0].idle_timeout"}, msg: "not used by udp",
		},
		{
			name:  "udp limits",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: :80\n    upstream: 10.0.0.5:80\n    udp:\n      max_sessions: 0\n      read_buffer: 8MiB\n      write_buffer: 100\n",
			paths: []string{"listeners[0].udp.max_sessions", "listeners[0].udp.write_buffer"},
		},
		{
			name:  "size that is not one",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: :80\n    upstream: 10.0.0.5:80\n    udp:\n      read_buffer: 4XB\n",
			paths: []string{"listeners[0].udp.read_buffer"}, where: "t.yaml:7", msg: "want a size like 4MiB",
		},
		{
			// A plain number bypassed parseSize's 2 GiB cap; the kernel takes
			// an int, so 4294967296 would have become a zero-byte request.
			name:  "size as a number above 2GiB",
			yaml:  "listeners:\n  - name: a\n    mode: udp\n    listen: :80\n    upstream: 10.0.0.5:80\n    udp:\n      read_buffer: 4294967296\n",
			paths: []string{"listeners[0].udp.read_buffer"}, where: "t.yaml:7", msg: "under 2GiB",
		},
		{
			name:  "raw exclusive not a bool",
			yaml:  "listeners:\n  - name: p\n    mode: raw\n    listen: :10001\n    upstream: 10.0.0.5:10001\n    raw:\n      exclusive: yes please\n",
			paths: []string{"listeners[0].raw.exclusive"}, msg: "true or false",
		},
		{
			name:  "raw timeouts",
			yaml:  "listeners:\n  - name: p\n    mode: raw\n    listen: :10001\n    upstream: 10.0.0.5:10001\n    raw:\n      queue_timeout: 0s\n      user_timeout: -1s\n",
			paths: []string{"listeners[0].raw.queue_timeout", "listeners[0].raw.user_timeout"}, where: "t.yaml:7",
		},
		{
			name:  "log level and format",
			yaml:  "log:\n  level: verbose\n  format: xml\nlisteners:" + one,
			paths: []string{"log.level", "log.format"}, where: "t.yaml:2", msg: "debug, info, warn or error",
		},
		{
			name:  "admin listen is a range",
			yaml:  "admin:\n  listen: 127.0.0.1:9090-9091\nlisteners:" + one,
			paths: []string{"admin.listen"}, msg: "one port",
		},
		{
			name: "admin hosts that are not names",
			yaml: "admin:\n  hosts:\n    - status.venue.example\n    - status.venue.example:9090\n    - http://status.venue.example/\n" +
				"    - 192.168.1.5\n    - '[::1]'\n    - '*.venue.example'\n    - ''\n    - status_page.example\n    - '[status.venue.example]'\nlisteners:" + one,
			paths: []string{"admin.hosts[1]", "admin.hosts[2]", "admin.hosts[3]", "admin.hosts[4]", "admin.hosts[5]", "admin.hosts[6]", "admin.hosts[7]", "admin.hosts[8]"},
			where: "t.yaml:4", msg: `"status.venue.example:9090" has a port; write the name alone`,
		},
		{
			name:  "admin hosts is not a list of text",
			yaml:  "admin:\n  hosts: {a: b}\nlisteners:" + one,
			paths: []string{"admin.hosts"}, msg: "want a list",
		},
		{
			// The kernel would pick a port and nobody could find the
			// status page or scrape /metrics.
			name:  "admin listen on port 0",
			yaml:  "admin:\n  listen: 127.0.0.1:0\nlisteners:" + one,
			paths: []string{"admin.listen"}, where: "t.yaml:2", msg: `"127.0.0.1:0": port 0`,
		},
		{
			name:  "admin listen without port",
			yaml:  "admin:\n  listen: 127.0.0.1\nlisteners:" + one,
			paths: []string{"admin.listen"}, msg: "no port",
		},
		{
			name:  "empty acl file",
			yaml:  "acl:\n  file: ''\nlisteners:" + one,
			paths: []string{"acl.file"},
		},
		{
			name:  "no listeners",
			yaml:  "log:\n  level: info\n",
			paths: []string{"listeners"}, where: "t.yaml", msg: "no listeners",
		},
		{
			name:  "listen written as a number",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: 80\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].listen"}, where: "t.yaml:4", msg: "want text, got the number 80",
		},
		{
			name:  "listeners not a list",
			yaml:  "listeners: cms\n",
			paths: []string{"listeners"}, where: "t.yaml:1", msg: "want a list",
		},
		{
			name:  "section not a mapping",
			yaml:  "log: debug\nlisteners:" + one,
			paths: []string{"log"}, msg: "want a mapping",
		},
		{
			name:  "key written twice",
			yaml:  "listeners:\n  - name: a\n    mode: tcp\n    listen: :80\n    name: b\n    upstream: 10.0.0.5:80\n",
			paths: []string{"listeners[0].name"}, where: "t.yaml:5", msg: "first at line 2",
		},
		{
			name: "every problem at once",
			yaml: "log:\n  level: loud\nlisteners:\n  - name: A\n    mode: tcp\n    listen: 0.0.0.0:20010-20001\n    upstream: 10.0.0.5:80\n" +
				"  - name: b\n    mode: ftp\n    listen: '[::]:21'\n    upstream: 10.0.0.5:21\n",
			paths: []string{"log.level", "listeners[0].name", "listeners[0].listen", "listeners[1].ftp.data_ports"},
			where: "t.yaml:2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := problemsOf(t, tt.yaml)
			var paths []string
			for _, e := range es {
				paths = append(paths, e.Path)
			}
			if !sameSet(paths, tt.paths) {
				t.Fatalf("problems at %q, want %q:\n%v", paths, tt.paths, es)
			}
			if tt.where != "" && es[0].Where != tt.where {
				t.Errorf("first problem at %q, want %q: %v", es[0].Where, tt.where, es[0])
			}
			if tt.msg != "" && !strings.Contains(es[0].Msg, tt.msg) {
				t.Errorf("first problem %q does not say %q", es[0], tt.msg)
			}
			t.Logf("\n%v", es)
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Valid configurations near the edges of the rules above.
func TestValidationAccepts(t *testing.T) {
	tests := []struct{ name, yaml string }{
		{"tcp and udp share a port", "listeners:\n  - name: a\n    mode: tcp\n    listen: 0.0.0.0:8100\n    upstream: 10.0.0.5:80\n  - name: b\n    mode: udp\n    listen: 0.0.0.0:8100-8226\n    upstream: 10.0.0.6:8100-8226\n"},
		{"same port on two addresses", "listeners:\n  - name: a\n    mode: tcp\n    listen: 10.1.1.1:80\n    upstream: 10.0.0.5:80\n  - name: b\n    mode: tcp\n    listen: 10.1.1.2:80\n    upstream: 10.0.0.6:80\n"},
		{"upstream on the same port elsewhere", "listeners:\n  - name: a\n    mode: tcp\n    listen: 127.0.0.1:80\n    upstream: 127.0.0.2:80\n  - name: b\n    mode: tcp\n    listen: 10.1.1.1:81\n    upstream: 10.0.0.5:81\n"},
		{"upstream by host name", "listeners:\n  - name: a\n    mode: tcp\n    listen: :80\n    upstream: cms.venue.example:80\n"},
		{"admin hosts, one name as text", "admin:\n  hosts: status.venue.example\nlisteners:" + one},
		{"admin disabled frees its port", "admin:\n  listen: ''\nlisteners:\n  - name: a\n    mode: tcp\n    listen: :9090\n    upstream: 10.0.0.5:80\n"},
		{"zero shutdown_grace and user_timeout", "shutdown_grace: 0s\nlisteners:\n  - name: p\n    mode: raw\n    listen: :10001\n    upstream: 10.0.0.5:10001\n    raw:\n      user_timeout: 0\n"},
		{"empty ftp public_ip", "listeners:\n  - name: f\n    mode: ftp\n    listen: :21\n    upstream: 10.0.0.5:21\n    ftp:\n      data_ports: 30000-30010\n      public_ip: ''\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseString(t, tt.yaml); err != nil {
				t.Fatalf("want valid, got:\n%v", err)
			}
		})
	}
}

func TestHealthSection(t *testing.T) {
	cfg, err := parseString(t, "listeners:\n  - name: a\n    mode: udp\n    listen: 127.0.0.1:8100\n    upstream: [10.0.0.6:8100, cms.venue.lan:8100]\n    health: {interval: 10s, timeout: 2s}\n"+one)
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.Listeners[0].Health; h != (Health{Interval: 10 * time.Second, Timeout: 2 * time.Second}) {
		t.Errorf("health %+v", h)
	}
	if h := cfg.Listeners[1].Health; h != (Health{}) {
		t.Errorf("a listener without the section has %+v, want no active checks", h)
	}
	for _, c := range []struct{ name, health, path, msg string }{
		{"no interval", "{timeout: 2s}", "listeners[0].health.interval", "missing"},
		{"zero interval", "{interval: 0s}", "listeners[0].health.interval", "above zero"},
		{"timeout over interval", "{interval: 1s, timeout: 5s}", "listeners[0].health.timeout", "longer than interval"},
		// A round starts as soon as the last ended: with 1ns, about 8,500
		// connects a second to one loopback upstream, 34k in 4 s, which
		// filled the box with sockets in TIME_WAIT (seen with relay run).
		{"interval of a nanosecond", "{interval: 1ns}", "listeners[0].health.interval", `1ns is below 50ms`},
		{"interval under the floor", "{interval: 49ms, timeout: 10ms}", "listeners[0].health.interval", `49ms is below 50ms`},
		{"unknown key", "{interval: 1s, path: /healthz}", "listeners[0].health.path", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			es := problemsOf(t, "listeners:\n  - name: a\n    mode: tcp\n    listen: 127.0.0.1:80\n    upstream: 10.0.0.5:80\n    health: "+c.health+"\n")
			if len(es) != 1 || es[0].Path != c.path || !strings.Contains(es[0].Msg, c.msg) {
				t.Errorf("problems %v, want one at %s saying %q", es, c.path, c.msg)
			}
		})
	}
}
