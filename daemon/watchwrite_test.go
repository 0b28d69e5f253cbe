package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
)

// writePause is how long writeInTwo's writer pauses between the parts:
// many quiet periods of the watches below (50 ms).
const writePause = time.Second

// writeInTwo writes first to the file at path opened with flag, pauses
// writePause holding it open, and fails the test if the watch reports a
// change meanwhile; then it writes rest and closes the file.
func writeInTwo(t *testing.T, changed <-chan struct{}, path string, flag int, first, rest string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(first); err != nil {
		t.Fatal(err)
	}
	select { // the deliberate pause of a slow writer
	case <-changed:
		t.Fatalf("%s was reported while its writer, paused after the first part, still held it open", filepath.Base(path))
	case <-time.After(writePause):
	}
	if _, err := f.WriteString(rest); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// noSecondReport fails the test if the watch reports another change within
// a few quiet periods.
func noSecondReport(t *testing.T, changed <-chan struct{}) {
	t.Helper()
	select {
	case <-changed:
		t.Fatal("one write was reported twice")
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWatchWaitsForTheWriterToClose: a config rewritten in place in two
// parts, its writer pausing for twenty quiet periods in between with the
// file open (an admin's cat > relay.yaml, a slow copy), is reported once,
// when the writer closes it, and the reload applies the whole file. The
// first part alone is a valid config without the listener "late" of the
// second. Fails before: the pause was taken for the end of the save and
// reported, and the reload that follows applied the first part, removing
// "late".
func TestWatchWaitsForTheWriterToClose(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	webPort, latePort := freePort(t, "tcp"), freePort(t, "tcp")
	render := func(up string) (head, tail string) {
		return fmt.Sprintf("admin: {listen: \"\"}\nlisteners:\n"+
				"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", webPort, up),
			fmt.Sprintf("  - {name: late, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n", latePort, up)
	}
	head, tail := render(newTCPEcho(t, "old").addr())
	w := startWorld(t, head+tail, nil)
	changed, err := w.d.Watch(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	head, tail = render(newTCPEcho(t, "new").addr())
	writeInTwo(t, changed, filepath.Join(w.dir, "relay.yaml"), os.O_TRUNC, head, tail)
	w.logs.Wait(t, `"message":"config watch: a file is still open for writing; reloading once it is closed"`,
		`relay.yaml"`)
	awaitChange(t, changed, "the config's change was not reported once its writer closed it")
	if err := w.d.Reload(); err != nil { // as relay does on the report
		t.Fatalf("reload: %v", err)
	}
	w.logs.Wait(t, `"message":"reload applied"`, `"changed":["late","web"]`, `"removed":[]`)
	if got := tcpOutcome(t, "127.0.0.2", fmt.Sprintf("127.0.0.1:%d", latePort)); got != "new:hello" {
		t.Fatalf("late after the reload: %q, want new:hello", got)
	}
	noSecondReport(t, changed)
	_ = w.d.Close()
}

// TestWatchWaitsForACreatedFileToClose: an ACL file the config names,
// created after the config in two parts with a pause between them, is
// reported once it is closed, and the reload reads both of its rules. The
// first rule alone (127.0.0.2 rejected) is a valid ACL that allows no one
// else. Fails before: its creation was reported during the pause.
func TestWatchWaitsForACreatedFileToClose(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	w, changed := aclComesLater(t)
	writeInTwo(t, changed, filepath.Join(w.dir, "acl.d", "hba.conf"), os.O_CREATE|os.O_EXCL,
		"host all 127.0.0.2/32 reject\n", "host all all allow\n")
	awaitChange(t, changed, "the ACL file was not reported once its writer closed it")
	if err := w.d.Reload(); err != nil {
		t.Fatalf("reload once the ACL file is written: %v", err)
	}
	addr := w.d.Config().Listeners[0].Listen[0]
	if got := tcpOutcome(t, "127.0.0.3", addr); got != "web:hello" {
		t.Fatalf("127.0.0.3 under the new ACL: %q, want web:hello (its second rule allows all)", got)
	}
	noSecondReport(t, changed)
	_ = w.d.Close()
}

// TestNoteChange: the bookkeeping of the files held open, change by change:
// a write holds a watched file until its close, its replacement or lost
// events; an unwatched file is neither a change nor held; a change of
// attributes does not end a write.
func TestNoteChange(t *testing.T) {
	const cfg, acl, other = "/etc/relay/relay.yaml", "/etc/relay/hba.conf", "/etc/relay/notes.txt"
	files := []string{cfg, acl}
	tests := []struct {
		name     string
		changes  []fileChange
		reported []bool // per change: a change of a watched file
		open     string // stillOpen after them
	}{
		{"write held until closed", []fileChange{{cfg, opWrite}, {cfg, opChange}}, []bool{true, true}, cfg},
		{"closed", []fileChange{{cfg, opWrite}, {cfg, opClose}}, []bool{true, true}, ""},
		{"renamed over", []fileChange{{acl, opWrite}, {acl, opReplace}}, []bool{true, true}, ""},
		{"another file", []fileChange{{other, opWrite}, {cfg, opWrite}, {cfg, opClose}}, []bool{false, true, true}, ""},
		{"events lost", []fileChange{{cfg, opWrite}, {op: opLost}}, []bool{true, true}, ""},
		{"one of two closed", []fileChange{{cfg, opWrite}, {acl, opWrite}, {cfg, opClose}}, []bool{true, true, true}, acl},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := make(map[string]bool)
			for i, c := range tc.changes {
				if got := noteChange(c, open, files); got != tc.reported[i] {
					t.Errorf("change %d (%s, op %d) reported %v, want %v", i, c.name, c.op, got, tc.reported[i])
				}
			}
			if got := stillOpen(open, files); got != tc.open {
				t.Errorf("still open: %q, want %q", got, tc.open)
			}
			if got := stillOpen(open, []string{other}); got != "" {
				t.Errorf("still open among files no longer watched: %q", got)
			}
		})
	}
}
