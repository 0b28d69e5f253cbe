package upgradewatch

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOutcomeArrives: what the relay reports is what the watcher gets,
// and it gets it as soon as it is sent, not at the end of its wait.
func TestOutcomeArrives(t *testing.T) {
	w, err := Listen(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Dial(os.Getpid())
	if err != nil || r == nil {
		t.Fatalf("Dial with a watcher waiting: %v, %v", r, err)
	}
	sent := Outcome{Pid: 4242, Binary: "/usr/local/bin/relay", Reason: "it exited before it was ready (exit status 3)"}
	if err := r.Report(sent); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, ok := w.Wait(10 * time.Second)
	if !ok || got != sent {
		t.Fatalf("Wait: %+v %v, want %+v", got, ok, sent)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the outcome took %v, as if Wait waited out its time", d)
	}
}

// TestNobodyWaits: with no watcher, Dial says so with nil, nil (the
// relay's every upgrade not started by relay upgrade), and a nil Reporter
// reports nothing.
func TestNobodyWaits(t *testing.T) {
	r, err := Dial(os.Getpid())
	if r != nil || err != nil {
		t.Fatalf("Dial with nobody waiting: %v, %v; want nil, nil", r, err)
	}
	if err := r.Report(Outcome{Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	r.Close()
}

// TestOnlyTheSignalledRelay: an outcome from any other process than the
// relay the watcher waits for is not taken (anyone in the network
// namespace can dial an abstract name), and Wait then takes its whole time
// without spinning.
func TestOnlyTheSignalledRelay(t *testing.T) {
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Skipf("no sleep to stand for another relay: %v", err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	w, err := Listen(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// This process dials the name of the other one's watcher.
	r, err := Dial(other.Process.Pid)
	if err != nil || r == nil {
		t.Fatalf("Dial: %v, %v", r, err)
	}
	if err := r.Report(Outcome{Pid: 1, Reason: "forged"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got, ok := w.Wait(200 * time.Millisecond); ok {
		t.Fatalf("Wait took %+v from pid %d, want only pid %d's", got, os.Getpid(), other.Process.Pid)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Wait returned empty after %v, before its 200ms: a caller's poll loop would spin", d)
	}
}

// TestHangUpWithoutOutcome: a relay that dialled and hung up (it was told
// to stop meanwhile) leaves the watcher waiting for the next dial, whose
// outcome it then gets.
func TestHangUpWithoutOutcome(t *testing.T) {
	w, err := Listen(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Dial(os.Getpid())
	if err != nil || r == nil {
		t.Fatalf("Dial: %v, %v", r, err)
	}
	r.Close()
	if got, ok := w.Wait(50 * time.Millisecond); ok {
		t.Fatalf("Wait after a hang-up: %+v, want nothing", got)
	}
	r, err = Dial(os.Getpid())
	if err != nil || r == nil {
		t.Fatalf("second Dial: %v, %v", r, err)
	}
	if err := r.Report(Outcome{Served: true, Pid: 7}); err != nil {
		t.Fatal(err)
	}
	if got, ok := w.Wait(10 * time.Second); !ok || !got.Served || got.Pid != 7 {
		t.Fatalf("Wait after the second dial: %+v %v, want served by pid 7", got, ok)
	}
}

// TestNameTaken: a second watcher for the same relay cannot listen (the
// command then falls back to /proc alone).
func TestNameTaken(t *testing.T) {
	w, err := Listen(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w2, err := Listen(os.Getpid()); err == nil {
		w2.Close()
		t.Fatal("a second Listen for the same relay succeeded")
	}
}

// TestUntrustedWatcher: a watcher running as another user than root or
// this process's is not told (it took the name before relay upgrade could:
// the outcome names paths and config errors). Needs root, setpriv and
// /usr/bin/python3 to listen as nobody.
func TestUntrustedWatcher(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to listen as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	listen := `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind("\0relay-upgrade-` + strconv.Itoa(os.Getpid()) + `")
s.listen(4)
print("listening", flush=True)
sys.stdin.read()
`
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", listen)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot run as nobody: %v", err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "listening\n" {
		t.Skipf("the listener as nobody did not start: %q %v", line, err)
	}
	r, err := Dial(os.Getpid())
	if r != nil || err == nil || !strings.Contains(err.Error(), "uid 65534") {
		r.Close()
		t.Fatalf("Dial to a watcher of uid 65534: %v, %v; want no Reporter and an error naming the uid", r, err)
	}
	t.Log(err)
}
