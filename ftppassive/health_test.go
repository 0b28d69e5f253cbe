package ftppassive

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	fixture "github.com/edgerelay/relay/internal/world"
	"github.com/pion/transport/v3/test"
)

// greeting connects a control client and returns the server's first line
// and how long it took to come.
func greeting(t *testing.T, w *world) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	return line, time.Since(start)
}

// TestControlFailover: a black-holed first server costs the first session
// one connect timeout; later sessions go to the second server at once;
// with every server down, clients get 421 at once and the outage is
// logged once.
func TestControlFailover(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	const timeout = 500 * time.Millisecond
	primary := fixture.NewSilent(t)
	backup := fixture.NewBackend(t, func(c net.Conn) {
		c.Write([]byte("220 backup\r\n"))
		c.Read(make([]byte, 1))
	})
	w := startProxy(t, Config{Upstreams: [][]string{{primary.Addr(), backup.Addr()}}, ConnectTimeout: timeout})
	if line, took := greeting(t, w); line != "220 backup\r\n" || took < timeout-50*time.Millisecond {
		t.Fatalf("first session: %q after %v, want the backup after the connect timeout", line, took)
	}
	for i := range 5 {
		if line, took := greeting(t, w); line != "220 backup\r\n" || took >= 100*time.Millisecond {
			t.Errorf("session %d: %q after %v, want the backup within 100ms", i+2, line, took)
		}
	}
	backup.Close() // the next session finds it refused; the rest find nothing up
	for range 3 {
		if line, took := greeting(t, w); !strings.HasPrefix(line, "421 ") || took >= 100*time.Millisecond {
			t.Errorf("with every server down: %q after %v, want 421 at once", line, took)
		}
	}
	logs := w.logs.String()
	if n := strings.Count(logs, "every upstream down"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, `"message":"upstream down"`); n != 2 {
		t.Errorf("%d down lines, want 2:\n%s", n, logs)
	}
}
