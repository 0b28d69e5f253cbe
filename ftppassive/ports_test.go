//go:build linux

package ftppassive

import (
	"os"
	"os/exec"
	"testing"
)

// TestSharedPortsTwoProcesses: two mappings of one table, as the old and
// the new process of an upgrade hold it, never hand out the same port; a
// port one gives back is free for the other; the ports of a process that
// died holding them are reclaimed once nothing else is free.
func TestSharedPortsTwoProcesses(t *testing.T) {
	old, err := NewSharedPorts(40000, 40003)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	f, err := old.File()
	if err != nil {
		t.Fatal(err)
	}
	next, err := OpenPorts(f, 40000, 40003)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	defer next.Close()
	next.self = uint32(os.Getppid()) // another live process

	oldPort, ok := old.take()
	if !ok {
		t.Fatal("old: no port from an empty table")
	}
	seen := map[uint16]bool{oldPort: true}
	for range 3 {
		p, ok := next.take()
		if !ok || seen[p] {
			t.Fatalf("next: take = %d, %v; taken so far %v", p, ok, seen)
		}
		seen[p] = true
	}
	if p, ok := next.take(); ok {
		t.Fatalf("next: took %d from a full table", p)
	}
	if p, ok := old.take(); ok {
		t.Fatalf("old: took %d from a full table", p)
	}
	old.put(oldPort)
	if p, ok := next.take(); !ok || p != oldPort {
		t.Fatalf("next: take = %d, %v after old gave %d back", p, ok, oldPort)
	}
	if n := old.held(); n != 4 {
		t.Fatalf("old sees %d ports held, want 4", n)
	}

	// next's process dies holding all four.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	next.self = uint32(dead.Process.Pid)
	for p := range seen {
		next.owner[p-next.first] = next.self
	}
	got := map[uint16]bool{}
	for range 4 {
		p, ok := old.take()
		if !ok {
			t.Fatalf("old: no port reclaimed from a dead owner; got %v", got)
		}
		got[p] = true
	}
	if len(got) != 4 {
		t.Fatalf("old reclaimed %v, want the 4 ports", got)
	}
}

// TestOpenPortsChecksRange: a table does not map for another range.
func TestOpenPortsChecksRange(t *testing.T) {
	p, err := NewSharedPorts(40000, 40009)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f, err := p.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if q, err := OpenPorts(f, 40000, 40019); err == nil {
		q.Close()
		t.Fatal("a 10-port table mapped for 20 ports")
	}
}
