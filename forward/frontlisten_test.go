//go:build linux

package forward

// The front's listen sockets when a listener stops accepting on a socket
// that lives on elsewhere: in its successor (reload) or in a new process
// (upgrade).

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/edgerelay/relay/internal/world"
	"golang.org/x/sys/unix"
)

// TestFrontStopAcceptingLeavesEpoll: a listener that stops accepting
// takes its listen socket out of the front's epoll set even though the
// socket stays open (its successor in the same Pool has it, then a new
// process would). A registration left behind is level-triggered: the
// front then woke for every connection meant for the successor, and spun
// on a whole core while one waited in the backlog (an upgrade's new
// process starting or backing off, seen as 500 ms of CPU in 500 ms).
func TestFrontStopAcceptingLeavesEpoll(t *testing.T) {
	checkFrontLeaks(t)
	backend := world.NewBackend(t, world.Echo)
	pool := NewPool(0)
	t.Cleanup(func() { pool.Close() }) // after the relays' cleanups
	a := startRelay(t, Config{Upstreams: [][]string{{backend.Addr()}}, Pool: pool})
	<-a.Started()
	if a.front == nil {
		t.Skip("no front on this box")
	}
	ino := socketInode(t, a)
	if n := epollWatches(t, a.front.epfd, ino); n != 1 {
		t.Fatalf("%d registrations of the listen socket in the front, want 1", n)
	}
	files, err := a.Files()
	if err != nil {
		t.Fatal(err)
	}
	b := listenRelay(t, Config{Listen: []string{a.addr(0)}, Upstreams: [][]string{{backend.Addr()}},
		Inherit: files, Pool: pool})
	files[0].Close()
	b.serve(t)
	<-b.Started()
	a.StopAccepting()
	if n := epollWatches(t, a.front.epfd, ino); n != 1 {
		t.Errorf("%d registrations of the listen socket after the reload, want 1 (the successor's)", n)
	}
	if _, err := echoOnce(b.addr(0), 1, 1000); err != nil {
		t.Fatal(err)
	}
	// An upgrade: the new process holds the socket, this one stops.
	files, err = b.Files()
	if err != nil {
		t.Fatal(err)
	}
	defer files[0].Close()
	b.StopAccepting()
	if n := epollWatches(t, b.front.epfd, ino); n != 0 {
		t.Errorf("%d registrations of the listen socket after the upgrade, want 0", n)
	}
}

// socketInode is the inode of r's first listen socket.
func socketInode(t *testing.T, r *relay) uint64 {
	t.Helper()
	rc, err := r.lns[0].SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatalf("fstat listen socket: %v %v", err, serr)
	}
	return st.Ino
}

// epollWatches counts the registrations of the file with inode ino in the
// epoll set epfd, as /proc lists them (whatever descriptor they came
// through, open or closed).
func epollWatches(t *testing.T, epfd int, ino uint64) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", epfd))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	want := fmt.Sprintf(" ino:%x ", ino)
	s := bufio.NewScanner(f)
	for s.Scan() {
		if line := s.Text() + " "; strings.HasPrefix(line, "tfd:") && strings.Contains(line, want) {
			n++
		}
	}
	return n
}
