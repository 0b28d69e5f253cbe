package forward

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// parker holds the idle directions of a Pool's forwards without a
// goroutine each: a direction that has had nothing to read for parkAfter
// registers its source socket here (EPOLLIN, one-shot) and its goroutine
// exits; when the socket becomes readable (bytes, EOF or an error), the
// parker's goroutine starts a fresh goroutine that resumes the direction
// where it stopped. See the package doc for why.
//
// The epoll set is itself pollable, so the parker goroutine waits for it
// in Go's netpoller like any socket (no thread blocked in epoll_wait), and
// closing it ends that goroutine. The goroutine starts at the first park.
//
// Who runs a parked direction: whoever moves its state from parked to
// running (unpark) owns it, and only one can; a spurious wake-up costs a
// read that finds nothing and a park again.
//
// The idle timeout of parked directions is one timer per parker, not one
// per connection (sweepIdle), and a burst of parks is followed by one
// release of the freed memory to the OS (memRelease).
type parker struct {
	ep      *os.File // the epoll set; also what the parker goroutine waits on
	epfd    int
	parked  atomic.Int64 // directions parked now, bare ones included
	running atomic.Int64 // directions of parking pairs with a goroutine now
	bare    atomic.Int64 // pairs parked bare now (bare_linux.go)
	// bareParks counts the bare parks so far, the front's handoffs
	// included; tests read it.
	bareParks atomic.Int64
	// noBare keeps every pair's conns while it is parked; the benchmarks
	// set it to compare.
	noBare bool
	// crowdAt is how many running directions make the parker crowded
	// (see crowded); crowdedDirections, tests lower it.
	crowdAt atomic.Int64
	serving sync.WaitGroup // the serve goroutine
	// freeOSMemory is debug.FreeOSMemory; tests count the calls.
	freeOSMemory func()
	// parking, when set, is called by park between marking a direction
	// parked and its epoll_ctl; tests hold that window open with it.
	parking func(d *direction)

	mu       sync.Mutex   // guards the following
	byFD     []*direction // byFD[fd]: the direction parked on descriptor fd, or nil (see below)
	started  bool
	closed   bool
	sweep    *time.Timer // sweepIdle, armed while something is parked
	sweepDue time.Time   // when sweep fires; zero: not armed
	burst    burst       // parks since the last release of memory
}

// byFD is a slice, not a map: descriptors are small and dense (the kernel
// hands out the lowest free one), so it costs 8 bytes per descriptor
// number against a map's ~31 per entry (62 bytes per idle connection in
// the BenchmarkIdleScale heap profile). It grows to the highest descriptor
// parked and does not shrink; RLIMIT_NOFILE bounds it.

// Direction states: running (a goroutine owns it), parked, or parked
// bare with its pair (bare_linux.go: whoever moves the pair's ab from
// dirBare to dirRunning owns both directions).
const (
	dirRunning int32 = iota
	dirParked
	dirBare
)

// errWouldPark leaves the direction's copy loop when its source has
// nothing to read and the pair has been idle for parkAfter.
var errWouldPark = errors.New("forward: direction idle, park it")

// errParkerClosed is park's error after close.
var errParkerClosed = errors.New("forward: parker closed")

func newParker() (*parker, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Nonblocking, so that os.NewFile hands the set to the netpoller.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	pk := &parker{ep: os.NewFile(uintptr(fd), "forward-parker"), epfd: fd}
	pk.freeOSMemory = debug.FreeOSMemory
	pk.crowdAt.Store(crowdedDirections)
	return pk, nil
}

// park marks d parked and registers its source socket (d.parkFD),
// one-shot: readiness is reported once, then the registration sleeps until
// parked again. Level-triggered, so bytes that arrived before the call are
// reported at once. Every write to d comes before the state change: from
// then on d may run in another goroutine. On an error the caller must
// unpark d (and run it, if it gets it back).
func (pk *parker) park(d *direction) error {
	fd := d.parkFD
	registered := d.inEpoll
	d.inEpoll = true
	pk.mu.Lock()
	if pk.closed {
		pk.mu.Unlock()
		return errParkerClosed
	}
	pk.startLocked()
	pk.parked.Add(1)
	d.adding.Add(1)
	d.state.Store(dirParked)
	pk.indexLocked(d)
	pk.armSweepLocked(d.p.sweepAfter())
	pk.parkedLocked()
	pk.mu.Unlock()
	if pk.parking != nil {
		pk.parking(d)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: fd}
	var err error
	if registered {
		err = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}
	if !registered || err == unix.ENOENT {
		err = unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	d.adding.Add(-1)
	if err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// startLocked starts the serve goroutine at the first park.
func (pk *parker) startLocked() {
	if !pk.started {
		pk.started = true
		pk.serving.Add(1)
		go pk.serve()
	}
}

// unpark takes a parked direction back; it reports whether the caller
// now owns it (and must run it).
func (pk *parker) unpark(d *direction) bool {
	if !d.state.CompareAndSwap(dirParked, dirRunning) {
		return false
	}
	pk.parked.Add(-1)
	pk.mu.Lock()
	pk.unindexLocked(d)
	pk.mu.Unlock()
	return true
}

// indexLocked lists d under its parkFD, for serve to find.
func (pk *parker) indexLocked(d *direction) {
	fd := int(d.parkFD)
	if fd >= len(pk.byFD) {
		pk.byFD = slices.Grow(pk.byFD, fd+1-len(pk.byFD))[:fd+1]
	}
	pk.byFD[fd] = d
}

// unindexLocked takes d off the list, unless another direction has
// its descriptor number by now.
func (pk *parker) unindexLocked(d *direction) {
	if pk.byFD[d.parkFD] == d {
		pk.byFD[d.parkFD] = nil
	}
}

// wake resumes a parked direction in a fresh goroutine, if it is parked;
// a direction parked bare resumes with its pair.
func (pk *parker) wake(d *direction) {
	if pk.unpark(d) {
		pk.running.Add(1)
		go d.runDetached()
		return
	}
	if d.state.Load() == dirBare {
		pk.wakeBare(d.p)
	}
}

// crowdedDirections is how many directions may wait with a goroutine of
// their own (parkAfter) before the parker is crowded: then a direction
// that finds nothing to read parks at once, however young its pair.
//
// Why: the runtime never frees a goroutine's descriptor (about 0.5 KiB),
// it only reuses it, so a burst of N connections that all wait at once
// leaves 2N descriptors behind for the life of the process, even after
// every direction parked. The bench's tcp-idle opens 9 600 connections
// within a second: 19 200 goroutines, about 1 KiB per connection kept
// for good. Crowded, a burst holds about crowdedDirections goroutines
// instead, while a relay with fewer connections waiting at once (the
// common case, and the connection-rate benchmarks with 16 clients) keeps
// parkAfter and never parks a short connection.
const crowdedDirections = 1024

// crowded reports whether so many directions run that idle ones should
// park at once.
func (pk *parker) crowded() bool { return pk.running.Load() > pk.crowdAt.Load() }

// armSweepLocked makes sweepIdle run within after, unless it is due
// sooner already.
func (pk *parker) armSweepLocked(after time.Duration) {
	due := time.Now().Add(after)
	if !pk.sweepDue.IsZero() && !due.Before(pk.sweepDue) {
		return
	}
	pk.sweepDue = due
	if pk.sweep == nil {
		pk.sweep = time.AfterFunc(after, pk.sweepIdle)
		return
	}
	pk.sweep.Reset(after)
}

// sweepIdle ends the pairs of parked directions that have been idle for
// their idle timeout (a parked direction has no deadline to fire) and
// re-arms itself for the next one due. It waits at least a pair's
// sweepGrain between runs, so it runs about once a second at most with
// the default idle timeout, whatever the number of connections; each run
// walks the parked directions under the parker's lock: 9 600 parked
// connections took 0.5-0.7 ms (2 ms with a clock read per direction; a
// throwaway benchmark of sweepIdle over 19 200 directions).
//
// It also parks bare the pairs that parked as usual and have been quiet
// for parkAfter since (see direction.park: a pair parked crowded, young,
// goes bare only once before that).
func (pk *parker) sweepIdle() {
	var idle, bare []*pair
	pk.mu.Lock()
	pk.sweepDue = time.Time{}
	next := time.Duration(-1)
	now := time.Now() // one clock read for the walk, not one per direction
	for _, d := range pk.byFD {
		if d == nil {
			continue
		}
		p := d.p
		if p.stopped.Load() {
			continue
		}
		quiet := now.Sub(p.start) - time.Duration(p.last.Load())
		left := p.idle - quiet // idleLeft at now
		if left <= 0 {
			idle = append(idle, p)
			continue
		}
		if due, ok := p.bareDue(quiet); ok && d == p.ab { // once per pair
			if due <= 0 {
				bare = append(bare, p)
			}
			left = min(left, due)
		}
		if w := max(left, p.sweepGrain()); next < 0 || w < next {
			next = w
		}
	}
	if next >= 0 && !pk.closed {
		pk.armSweepLocked(next)
	}
	pk.mu.Unlock()
	for _, p := range idle {
		p.stop(EndIdle, nil) // wakes its parked directions; twice is harmless
	}
	for _, p := range bare {
		pk.parkParkedBare(p)
	}
}

// sweepAfter is when the sweep should look at the pair of a direction
// parking now: at its idle timeout, or when it may go bare, if sooner.
func (p *pair) sweepAfter() time.Duration {
	after := p.idleLeft()
	if p.bareOK.Load() {
		after = min(after, p.parkAfter-p.quietFor())
	}
	return max(after, p.sweepGrain())
}

// repark parks an owned direction again as usual, or runs it when that
// fails.
func (pk *parker) repark(d *direction) {
	err := pk.park(d)
	if err == errParkerClosed || ((err != nil || d.p.stopped.Load()) && pk.unpark(d)) {
		pk.running.Add(1)
		go d.runDetached()
	}
}

// serve waits for readiness on the epoll set and resumes the directions
// whose sockets became readable, until close.
func (pk *parker) serve() {
	defer pk.serving.Done()
	rc, err := pk.ep.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	n := 0
	wait := func(uintptr) bool {
		var err error
		n, err = unix.EpollWait(pk.epfd, events, 0)
		if err != nil {
			n = 0 // EINTR: look again
		}
		return n > 0
	}
	for {
		if err := rc.Read(wait); err != nil {
			return // closed
		}
		for i := range n {
			pk.mu.Lock()
			var d *direction
			if fd := int(events[i].Fd); fd < len(pk.byFD) {
				d = pk.byFD[fd]
			}
			pk.mu.Unlock()
			if d != nil {
				pk.wake(d)
			}
		}
	}
}

// close ends serve and the timers. Call it once no forward can park any
// more (a late park fails and its direction waits in the poller).
func (pk *parker) close() error {
	pk.mu.Lock()
	if pk.closed {
		pk.mu.Unlock()
		return nil
	}
	pk.closed = true
	if pk.sweep != nil {
		pk.sweep.Stop()
	}
	if pk.burst.timer != nil {
		pk.burst.timer.Stop()
	}
	pk.mu.Unlock()
	err := pk.ep.Close()
	pk.serving.Wait()
	if err != nil {
		return fmt.Errorf("close parker: %w", err)
	}
	return nil
}

// After a burst of connections has parked, the goroutine stacks their
// directions ran on are free, but the runtime hands them back to the OS
// only bit by bit (the scavenger), and a relay that never allocates much
// may hold them for minutes: BenchmarkIdleScale, 9 600 idle connections,
// 8.0 KiB RSS per connection 2.5 s after the burst, 3.7 once released.
// So a parker that has seen a burst (releaseParks parks) releases the
// free memory itself once the burst is over: no park for releaseQuiet,
// or releaseMaxWait after the burst began if parks go on. A release is a
// forced GC plus madvise of the free pages (about 20 ms of CPU at 10 000
// connections); releaseEvery bounds it, so it cannot run in a loop
// whatever the traffic.
const (
	releaseParks   = 1024
	releaseQuiet   = time.Second
	releaseMaxWait = 10 * time.Second
	releaseEvery   = time.Minute
)

// burst is the parker's record of parks since it last released memory.
type burst struct {
	parks       int
	start, last time.Time   // the first and the latest park of the burst
	released    time.Time   // the last release; zero: none yet
	timer       *time.Timer // releaseIfQuiet, armed once parks reach releaseParks
	due         time.Time   // when timer fires
}

// parkedLocked counts a park toward the burst.
func (pk *parker) parkedLocked() {
	b := &pk.burst
	now := time.Now()
	if b.parks == 0 {
		b.start = now
	}
	b.parks++
	b.last = now
	if b.parks < releaseParks || b.timer != nil {
		return
	}
	wait := releaseQuiet
	if !b.released.IsZero() {
		wait = max(wait, time.Until(b.released.Add(releaseEvery)))
	}
	b.due = now.Add(wait)
	b.timer = time.AfterFunc(wait, pk.releaseIfQuiet)
}

// releaseIfQuiet is the burst timer's function: it releases the free
// memory once parks have stopped (or the burst has gone on for
// releaseMaxWait), else looks again after releaseQuiet.
func (pk *parker) releaseIfQuiet() {
	pk.mu.Lock()
	b := &pk.burst
	if pk.closed {
		pk.mu.Unlock()
		return
	}
	now := time.Now()
	if now.Sub(b.last) < releaseQuiet && now.Sub(b.start) < releaseMaxWait {
		b.due = now.Add(releaseQuiet)
		b.timer.Reset(releaseQuiet)
		pk.mu.Unlock()
		return
	}
	*b = burst{released: now}
	pk.mu.Unlock()
	pk.freeOSMemory()
}
