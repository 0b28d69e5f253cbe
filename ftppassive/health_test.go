package ftppassive

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
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

// TestCloseDuringServerDial: Close while a control connection's dial is
// under way ends the client without blaming the server, as a tcp
// listener does (forward's TestCloseInterruptsDial): no 421 counted or
// sent, no warning, and the session's line says shutdown.
func TestCloseDuringServerDial(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	dialling := make(chan struct{})
	var once sync.Once
	hang := func(ctx context.Context, network, addr string) (net.Conn, error) {
		once.Do(func() { close(dialling) })
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	const server = "192.0.2.1:21" // never dialled: hang stands in
	w := startProxy(t, Config{Upstreams: [][]string{{server}}, ConnectTimeout: time.Minute, Dial: hang})
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-dialling:
	case <-time.After(fixture.WaitLimit):
		t.Fatal("the relay never dialled the server")
	}
	w.proxy.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c); len(got) != 0 || err != nil {
		t.Errorf("the client read %q, %v; want a bare close", got, err)
	}
	line := w.logs.Wait(t, `"message":"ftp session"`)
	if !fixture.ContainsAll(line, `"end":"shutdown"`, `"upstream":"`+server+`"`) {
		t.Errorf("session line %s, want end shutdown naming the server", line)
	}
	if n := w.proxy.Stats().UpstreamFailed.Load(); n != 0 {
		t.Errorf("UpstreamFailed = %d, want 0 (a shutdown is no unreachable server)", n)
	}
	if n := w.logs.Count(`"level":"warn"`); n != 0 {
		t.Errorf("%d warnings, want 0:\n%s", n, w.logs)
	}
}

// TestServerDialShortOfDescriptors: a control connection whose dial
// failed for want of the relay's own descriptors gets its 421, and the
// line blames the relay, not the server, which stays up: as forward's
// line for a tcp client (TestDialShortOfDescriptors).
func TestServerDialShortOfDescriptors(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	emfile := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	w := startProxy(t, Config{Upstreams: [][]string{{"192.0.2.1:21"}}, Dial: emfile}) // never dialled: emfile stands in
	if line, _ := greeting(t, w); !strings.HasPrefix(line, "421 ") {
		t.Fatalf("greeting %q, want 421", line)
	}
	w.logs.Wait(t, `"message":"relay out of descriptors, buffers or ports; answered 421"`, "too many open files")
	if strings.Contains(w.logs.String(), "upstream down") {
		t.Errorf("a local shortage marked the server down:\n%s", w.logs)
	}
}
