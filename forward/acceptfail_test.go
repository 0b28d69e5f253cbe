//go:build linux

package forward

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/edgerelay/relay/internal/world"
)

// acceptFailChild names the accept path a child of TestAcceptFailureCounted
// runs: "engine" or "front".
const acceptFailChild = "FORWARD_TEST_ACCEPT_FAIL"

// TestAcceptFailureCounted: a listener whose process is out of descriptors
// counts each failed accept and shows it is backing off, from the first
// failure until an accept succeeds again (the status page otherwise said
// "serving" while it took no client), on both accept paths. It runs in a
// child process, since it uses up the process's descriptors.
func TestAcceptFailureCounted(t *testing.T) {
	if path := os.Getenv(acceptFailChild); path != "" {
		acceptFailure(t, path == "front")
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"engine", "front"} {
		t.Run(path, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^TestAcceptFailureCounted$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), acceptFailChild+"="+path)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestAcceptFailureCounted") {
				t.Fatalf("child (%s accept path): %v\n%s", path, err, out)
			}
			if strings.Contains(string(out), "--- SKIP") {
				t.Skipf("child skipped:\n%s", out)
			}
		})
	}
}

// acceptFailure is the child's half: it fills the descriptor table, lets
// one client connect, and watches the listener fail to accept it, then
// frees the table and sees the client served.
func acceptFailure(t *testing.T, front bool) {
	checkLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	cfg := Config{Upstreams: [][]string{{backend.Addr()}}}
	if front {
		pool := NewPool(0)
		t.Cleanup(func() { pool.Close() })
		cfg.Pool = pool
	}
	r := listenRelay(t, cfg)
	if !front {
		r.engineOnly()
	} else if !r.useFront {
		t.Skip("no front on this box")
	}
	r.serve(t)
	<-r.Started()

	// A low limit keeps the filling short; the test binary holds a few
	// dozen descriptors.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: 256}); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	var fill []*os.File
	defer func() {
		for _, f := range fill {
			f.Close()
		}
	}()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		fill = append(fill, f)
	}
	// One descriptor for the client's socket; none is left for accept.
	fill[len(fill)-1].Close()
	fill = fill[:len(fill)-1]
	c := r.dial(t, 0)
	st := r.Stats()
	world.Eventually(t, "a failed accept, counted, and the socket backing off", func() bool {
		return st.AcceptErrors.Load() > 0 && st.AcceptBackingOff.Load() == 1
	})
	if n := st.Accepted.Load(); n != 0 {
		t.Fatalf("accepted %d with no descriptor free", n)
	}

	for _, f := range fill {
		f.Close()
	}
	fill = nil
	if got := roundTrip(t, c, "served after the back-off"); got != "served after the back-off" {
		t.Fatalf("echo %q", got)
	}
	if n := st.AcceptBackingOff.Load(); n != 0 || st.Accepted.Load() != 1 {
		t.Errorf("after an accept succeeded: backing off %d, accepted %d; want 0 and 1", n, st.Accepted.Load())
	}
	if n := strings.Count(r.logs.String(), "accept failed, backing off"); n != 1 {
		t.Errorf("%d back-off warnings, want 1 (one per episode):\n%s", n, r.logs)
	}
}
