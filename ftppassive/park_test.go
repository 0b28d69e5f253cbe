//go:build linux

package ftppassive

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/relay/forward"
	testworld "github.com/edgerelay/relay/internal/world"
)

// TestDataParkResume: a passive download that stalls parks both
// directions of its data connection (no goroutine of the transfer is
// left) and, when the server sends again, the rest of the file arrives
// whole, counted once.
func TestDataParkResume(t *testing.T) {
	pool := forward.NewPool(0)
	t.Cleanup(func() { pool.Close() })
	tr := newTranscript(t, Config{DataPorts: dataRange, Pool: pool})
	tr.login()
	c, s := tr.epsvData()
	data, sum := randomBytes(t, 1<<20+7)
	const head = 1000
	if _, err := s.Write(data[:head]); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got[:head]); err != nil {
		t.Fatalf("read the first %d bytes: %v", head, err)
	}
	// Parked after one to two seconds of silence (forward's package doc).
	testworld.Eventually(t, "both directions parked", func() bool {
		return pool.Parked() == 2 && transferGoroutines() == 0
	})
	go func() {
		s.Write(data[head:])
		s.Close()
	}()
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the rest: %v", err)
	}
	copy(got[head:], rest)
	if n := head + len(rest); n != len(data) || sha256Hex(got[:n]) != sum {
		t.Fatalf("client got %d bytes of %d, or they differ", n, len(data))
	}
	c.Close()
	tr.w.logs.Wait(t, `"data transfer"`, fmt.Sprintf(`"bytes_down":%d`, len(data)), `"end":"eof"`)
	if n := tr.w.proxy.Stats().DataBytesToClient.Load(); n != uint64(len(data)) {
		t.Errorf("DataBytesToClient %d, want %d", n, len(data))
	}
	testworld.Eventually(t, "nothing parked", func() bool { return pool.Parked() == 0 })
}

// transferGoroutines counts the goroutines of data transfers: a parked one
// holds none.
func transferGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "forward.(*direction).") + strings.Count(string(buf), "ftppassive.(*dataConn).serve")
}
