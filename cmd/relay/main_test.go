package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/world"
)

// TestMain lets a test run this binary's main in a child process: the test
// binary re-executes itself with GO_WANT_RELAY_MAIN=1, which is cheaper than a
// go build and runs the very code under test.
func TestMain(m *testing.M) {
	if os.Getenv("GO_WANT_RELAY_MAIN") == "1" {
		main() // exits
	}
	if addr := os.Getenv("GO_WANT_LISTEN"); addr != "" {
		os.Exit(listenUntilStdinCloses(addr)) // a program that is no relay, on a relay's port
	}
	os.Exit(m.Run())
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckBadInput(t *testing.T) {
	cases := []struct {
		name, config, want string
	}{
		{"missing file", "", "no such file"},
		{"yaml syntax", "listeners: [\n  {name: x", "relay.yaml:"},
		{"unknown key", "listeners:\n  - {name: a, mode: tcp, listen: \"127.0.0.1:1\", upstrem: \"127.0.0.1:2\"}\n", "listeners[0].upstrem"},
		{"reversed range", "listeners:\n  - {name: a, mode: tcp, listen: \"127.0.0.1:9-1\", upstream: \"127.0.0.1:2\"}\n", "listeners[0].listen"},
		{"admin on port 0", "admin: {listen: \"127.0.0.1:0\"}\nlisteners:\n  - {name: a, mode: tcp, listen: \"127.0.0.1:1\", upstream: \"127.0.0.1:2\"}\n", `admin.listen: "127.0.0.1:0": port 0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "relay.yaml")
			if tc.config != "" {
				path = writeConfig(t, tc.config)
			}
			code, _, stderr := runCmd("check", "-config", path)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
			}
			if !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("stderr %q does not name %q (or has a stack trace)", stderr, tc.want)
			}
		})
	}
}

// TestCheckMissingACL: a config given by a relative path whose acl.file is
// missing is refused with the key and the file's absolute path, once.
func TestCheckMissingACL(t *testing.T) {
	dir := t.TempDir()
	yaml := "acl: {file: missing_hba.conf}\nlisteners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"127.0.0.1:80\"}\n"
	if err := os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	code, _, stderr := runCmd("check", "-config", "relay.yaml")
	want := "relay check: acl.file: open " + filepath.Join(dir, "missing_hba.conf") + ": no such file or directory\n"
	if code != 1 || stderr != want {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

func TestCheckExamplesAndACLTest(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		code, stdout, stderr := runCmd("check", "-config", f)
		if code != 0 {
			t.Errorf("relay check %s: exit %d\n%s", f, code, stderr)
		}
		if !strings.Contains(stdout, "acl:") {
			t.Errorf("relay check %s printed no acl line:\n%s", f, stdout)
		}
	}
	hba := "host web 127.0.0.2/32 reject\nhost all all allow\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "relay_hba.conf"), []byte(hba), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "relay.yaml")
	yaml := "acl: {file: relay_hba.conf}\nlisteners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"127.0.0.1:80\"}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("check", "-config", cfg, "-acl-test", "127.0.0.2", "-listener", "web")
	if code != 0 || !strings.Contains(stdout, "reject by ") || !strings.Contains(stdout, "relay_hba.conf:1") {
		t.Fatalf("acl-test: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCmd("check", "-config", cfg, "-acl-test", "127.0.0.9", "-listener", "web")
	if code != 0 || !strings.Contains(stdout, "allow by ") {
		t.Fatalf("acl-test allow: exit %d stdout %q", code, stdout)
	}
}

func TestVersionAndExample(t *testing.T) {
	if code, out, _ := runCmd("version"); code != 0 || !strings.HasPrefix(out, "relay ") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, out, _ := runCmd("example")
	if code != 0 || !strings.Contains(out, "listeners:") {
		t.Fatalf("example: %d %q", code, out)
	}
	// The example and its ACL file, written out side by side under the
	// names README, INSTALL.md, the unit and the package use (relay.yaml,
	// relay_hba.conf), must be valid.
	if strings.Contains(out, "cayin_hba.conf") {
		t.Errorf("relay example names cayin_hba.conf; installed, the ACL file is relay_hba.conf")
	}
	cfg := writeConfig(t, out)
	_, hba, _ := runCmd("example", "-acl")
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "relay_hba.conf"), []byte(hba), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd("check", "-config", cfg); code != 0 {
		t.Fatalf("relay example does not pass relay check: %s", stderr)
	}
}

// TestSignalDrain runs the real main in a child process: SIGHUP reloads (a
// broken file changes nothing), SIGTERM stops accepting, lets a live
// connection finish its exchange within the grace period, then exits 0.
func TestSignalDrain(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	port := world.ReserveTCPPort(t)
	good := fmt.Sprintf("admin: {listen: \"\"}\nshutdown_grace: 10s\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n",
		port, backend.Addr())
	cfg := writeConfig(t, good)

	cmd, logs := startChild(t, cfg)

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	// SIGHUP with a broken file changes nothing; with a good one it applies.
	if err := os.WriteFile(cfg, []byte("listeners: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "nothing changed")
	if err := os.WriteFile(cfg, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "reload applied")

	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, logs, `"grace_ms":10000`) // the "stopping" line, its grace in milliseconds
	// New connections are refused (once the listener has closed, just after
	// the log line) while the old one still works.
	refused := false
	for deadline := time.Now().Add(5 * time.Second); !refused && time.Now().Before(deadline); {
		c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			refused = true
			break
		}
		c2.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Error("relay still accepts 5 s after SIGTERM")
	}
	if _, err := c.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("live connection during drain: %q %v", buf, err)
	}
	c.Close()
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relay exited with %v, want 0", err)
	}
}

// startChild runs this binary's main on cfg in a child process and waits
// until it has started; logs reads the child's log lines.
func startChild(t *testing.T, cfg string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd, logs, _ := startChildLogs(t, cfg)
	return cmd, logs
}

// startChildLogs is startChild that also returns what the relay logged up
// to and including "relay started".
func startChildLogs(t *testing.T, cfg string) (*exec.Cmd, *bufio.Reader, string) {
	t.Helper()
	cmd, stderr := runChild(t, cfg)
	logs := bufio.NewReader(stderr)
	started := waitLog(t, logs, "relay started")
	return cmd, logs, started
}

// runChild starts this binary's main on cfg in a child process and returns
// it with its log output (stderr).
func runChild(t *testing.T, cfg string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-config", cfg)
	cmd.Env = append(os.Environ(), "GO_WANT_RELAY_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stderr
}

// waitLog reads log lines until one contains want and returns them (bounded
// by a deadline through the child's own output; the test fails if the child
// exits first).
func waitLog(t testing.TB, r *bufio.Reader, want string) (read string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		line, err := r.ReadString('\n')
		read += line
		if strings.Contains(line, want) {
			return read
		}
		if err != nil {
			t.Fatalf("relay output ended before %q: %v; it said:\n%s", want, err, read)
		}
	}
	t.Fatalf("no %q in relay output", want)
	return read
}

// TestSecondSignalStopsAtOnce: during a drain that would last 30 s, a second
// SIGTERM ends the process at once.
func TestSecondSignalStopsAtOnce(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := backend.Accept(); err == nil {
			held <- c
		}
	}()
	port := world.ReserveTCPPort(t)
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nshutdown_grace: 30s\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n",
		port, backend.Addr()))
	cmd, logs := startChild(t, cfg)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() {
		select {
		case b := <-held:
			b.Close()
		default:
		}
	}()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, logs, "stopping")
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("second signal took %v", d)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("relay still draining 10 s after a second SIGTERM")
	}
}

// TestStrayArgument: an argument that is neither a flag nor the command is a
// usage error that says what was wrong, not a silent exit 2.
func TestStrayArgument(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"config as positional", []string{"check", "relay.yaml"},
			[]string{`unexpected argument "relay.yaml"`, "-config relay.yaml", "Usage"}},
		{"command after flags", []string{"-config", "x.yaml", "check"},
			[]string{`unexpected argument "check"`, "relay check -config", "Usage"}},
		{"run with a positional", []string{"run", "extra"}, []string{`unexpected argument "extra"`}},
		{"example with a positional", []string{"example", "extra"}, []string{`unexpected argument "extra"`}},
		{"version with a positional", []string{"version", "extra"}, []string{`unexpected argument "extra"`}},
		{"config as the command", []string{"/etc/relay/relay.yaml"},
			[]string{`unknown command "/etc/relay/relay.yaml"`, "relay -config /etc/relay/relay.yaml"}},
		{"help as a command", []string{"help"}, []string{"relay check -config FILE", "-watch"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(tc.args...)
			if code != 2 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestSecondInstanceExits: a second relay on the config a running one
// serves exits 1 at once with one line naming the address and the running
// relay's pid; the first one keeps serving.
func TestSecondInstanceExits(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	port := world.ReserveTCPPort(t)
	cfg := writeConfig(t, fmt.Sprintf("admin: {listen: \"\"}\nlog: {format: json}\n"+
		"listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n",
		port, backend.Addr()))
	first, logs := startChild(t, cfg)
	go func() { _, _ = io.Copy(io.Discard, logs) }()
	defer func() {
		_ = first.Process.Signal(syscall.SIGTERM)
		_ = first.Wait()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, os.Args[0], "-config", cfg) // killed if it serves instead
	second.Env = append(os.Environ(), "GO_WANT_RELAY_MAIN=1")
	var stderr bytes.Buffer
	second.Stderr = &stderr
	err := second.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second relay: %v, want exit status 1\n%s", err, stderr.String())
	}
	want := fmt.Sprintf("tcp 127.0.0.1:%d is already in use by pid %d (", port, first.Process.Pid)
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("second relay said %q, want one line with %q", stderr.String(), want)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("first relay after the second one failed: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("first relay does not forward any more: %v", err)
	}
}

// TestCheckACLNamesUndefinedListener: relay check reads the ACL beside the
// config (config resolves the path) and refuses a rule naming a listener
// the config does not define, at its line.
func TestCheckACLNamesUndefinedListener(t *testing.T) {
	cfg := writeConfig(t, "acl: {file: relay_hba.conf}\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"127.0.0.1:80\"}\n")
	hba := filepath.Join(filepath.Dir(cfg), "relay_hba.conf")
	if err := os.WriteFile(hba, []byte("host web 10.0.0.0/8 allow\nhost wbe 10.0.0.0/8 allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd("check", "-config", cfg)
	want := hba + `:2:6: listener "wbe" is not defined in the config (it has admin, web)`
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// TestCheckWarnsLikeStart: relay check prints the warnings relay logs when it
// starts (here: a listener no ACL rule names while another is named), exits
// 0 with them, and 1 with -strict.
func TestCheckWarnsLikeStart(t *testing.T) {
	backend := world.NewBackend(t, world.Echo)
	cfg := writeConfig(t, fmt.Sprintf("acl: {file: relay_hba.conf}\nadmin: {listen: \"\"}\nlog: {format: json}\nlisteners:\n"+
		"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q}\n"+
		"  - {name: cms, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q}\n",
		world.ReserveTCPPort(t), backend.Addr(), world.ReserveTCPPort(t), backend.Addr()))
	hba := filepath.Join(filepath.Dir(cfg), "relay_hba.conf")
	if err := os.WriteFile(hba, []byte("host web 127.0.0.0/8 allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const want = `no rule in %s names listener "cms" (or all): every source is rejected on it, while other listeners have rules`
	msg := fmt.Sprintf(want, hba)

	code, stdout, stderr := runCmd("check", "-config", cfg)
	if code != 0 || !strings.Contains(stderr, "warning: listeners[1]: "+msg) || !strings.Contains(stdout, "listener cms") {
		t.Fatalf("check: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, _, stderr = runCmd("check", "-strict", "-config", cfg)
	if code != 1 || !strings.Contains(stderr, msg) || !strings.Contains(stderr, "-strict") {
		t.Fatalf("check -strict: exit %d, stderr %s", code, stderr)
	}

	cmd, _, logged := startChildLogs(t, cfg)
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}()
	if !strings.Contains(logged, strconv.Quote(msg)[1:]) { // JSON escapes the quotes
		t.Fatalf("relay did not log %q at start:\n%s", msg, logged)
	}
}

// TestCheckACLTestAdmin: the ACL file names the admin endpoint "admin"
// (README, Source ACL), so -acl-test explains it as it does a listener, by
// the rule the endpoint applies: the file's lines when it names admin or
// the endpoint listens beyond loopback, else whoever reaches loopback.
func TestCheckACLTestAdmin(t *testing.T) {
	cases := []struct {
		name, hba, admin, addr string
		code                   int
		verdict, line          string // stdout starts with verdict and holds line
	}{
		{"named", "host admin 127.0.0.2/32 reject\nhost all all allow\n", "127.0.0.1:9090", "127.0.0.2", 0, "reject by ", "relay_hba.conf:1 "},
		{"named allow", "host admin 127.0.0.2/32 reject\nhost all all allow\n", "127.0.0.1:9090", "127.0.0.3", 0, "allow by ", "relay_hba.conf:2 "},
		{"exposed", "host all 192.0.2.0/24 reject\nhost all all allow\n", "0.0.0.0:9090", "192.0.2.7", 0, "reject by ", "relay_hba.conf:1 "},
		{"loopback unnamed", "host all 127.0.0.0/8 reject\n", "127.0.0.1:9090", "127.0.0.1", 0, "allow: the admin endpoint listens on loopback", "does not name admin"},
		{"off", "host all all allow\n", `""`, "127.0.0.1", 2, "", ""},
		{"not an address", "host admin all allow\n", "127.0.0.1:9090", "nobody", 2, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "relay_hba.conf"), []byte(c.hba), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(dir, "relay.yaml")
			yaml := "admin: {listen: " + c.admin + "}\nacl: {file: relay_hba.conf}\nlisteners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:8080\", upstream: \"127.0.0.1:80\"}\n"
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCmd("check", "-config", cfg, "-acl-test", c.addr, "-listener", "admin")
			if code != c.code || !strings.HasPrefix(stdout, c.verdict) || !strings.Contains(stdout, c.line) {
				t.Fatalf("exit %d (want %d), stdout %q (want %q ... %q), stderr %q", code, c.code, stdout, c.verdict, c.line, stderr)
			}
			if c.name == "off" && !strings.Contains(stderr, "admin.listen") {
				t.Errorf("stderr %q does not name admin.listen", stderr)
			}
		})
	}
}

// TestHelpNamesCommands: relay -h, the first thing an admin types on a new
// box, names every sub-command (README, Running it), not only run's flags.
func TestHelpNamesCommands(t *testing.T) {
	code, _, stderr := runCmd("-h")
	if code != 2 {
		t.Errorf("relay -h: exit %d, want 2 (usage)", code)
	}
	for _, cmd := range commands[1:] {
		if !strings.Contains(stderr, "relay "+cmd) {
			t.Errorf("relay -h does not name relay %s:\n%s", cmd, stderr)
		}
	}
	if !strings.Contains(stderr, "-watch") || !strings.Contains(stderr, "-config") {
		t.Errorf("relay -h lost run's flags:\n%s", stderr)
	}
}

// TestOutputWriteFails: a command whose output cannot be written (a full
// disk under `relay example > /etc/relay/relay.yaml`) exits 1 and says
// why, instead of exit 0 over a file cut short or empty. Only relay check
// looked at its write errors.
func TestOutputWriteFails(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	dir := t.TempDir()
	relayCert(t, "ca", "-dir", dir)
	for _, args := range [][]string{
		{"example"},
		{"example", "-acl"},
		{"version"},
		{"cert", "show", filepath.Join(dir, "ca.crt")},
	} {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "GO_WANT_RELAY_MAIN=1")
		cmd.Stdout = full
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr.String(), "no space left on device") {
			t.Errorf("relay %s > /dev/full: exit %d (%v), stderr %q; want 1 and the write error", strings.Join(args, " "), code, err, stderr.String())
		}
	}
}
