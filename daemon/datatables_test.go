package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pion/transport/v3/test"
)

// TestReloadFreesUnusedDataTables: the FTP data-port table of a range
// (a shared memory file and its mapping) lives while an ftp listener,
// running or draining, has that range. A reload that moves the listener
// to another range frees the old range's table once the old listener has
// drained, and one that removes the listener frees its table too; an
// upgrade would otherwise hand every range the relay ever had on to the
// next process.
func TestReloadFreesUnusedDataTables(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	base := dataTableFiles(t)
	admin, port, up := adminOn(t), freePort(t, "tcp"), fakeFTP(t)
	web := newTCPEcho(t, "web")
	webPort := freePort(t, "tcp")
	render := func(data int) string {
		y := admin + fmt.Sprintf("listeners:\n  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q}\n", webPort, web.addr())
		if data > 0 {
			y += fmt.Sprintf("  - {name: ftp, mode: ftp, listen: \"127.0.0.1:%d\", upstream: %q, ftp: {data_ports: \"%d-%d\"}}\n",
				port, up, data, data)
		}
		return y
	}
	first, second := freePort(t, "tcp"), freePort(t, "tcp")
	w := startWorld(t, render(first), nil)
	if n := dataTableFiles(t) - base; n != 1 {
		t.Fatalf("%d data-port tables with one ftp listener, want 1", n)
	}
	for i, step := range []struct {
		data int
		want int
	}{{second, 1}, {0, 0}} {
		w.writeFile("relay.yaml", render(step.data))
		if err := w.d.Reload(); err != nil {
			t.Fatal(err)
		}
		w.logs.WaitCount(t, i+1, `"listener":"ftp"`, "retired listener drained")
		if n := dataTableFiles(t) - base; n != step.want {
			t.Errorf("%d data-port tables after the reload to data_ports %d, want %d", n, step.data, step.want)
		}
	}
	_ = w.d.Close()
}

// dataTableFiles counts the process's FTP data-port table files.
func dataTableFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.Contains(link, "relay-ftp-data-ports") {
			n++
		}
	}
	return n
}
