package main

import (
	"errors"
	"sync"
	"time"
)

// env is what every scenario and forwarder of one bench run shares.
type env struct {
	dir   string // temporary directory: configs, logs, the relay binary
	ports *portAlloc
	scale scale
	// files is RLIMIT_NOFILE of the bench, which the forwarders inherit.
	files int

	mu       sync.Mutex // guards the following
	live     []*process // every process started, so an interrupt can stop them
	stopping bool       // set by stopAll: start no more
}

// maxConns is how many proxied connections every forwarder can hold within
// the descriptor limit: two descriptors each, and 800 to spare for
// listeners, logs, and HAProxy's splice pipes.
func (e *env) maxConns() int { return (e.files - 800) / 2 }

// startProcess starts a forwarder process and remembers it for stopAll.
// The lock is held while the process starts, so that stopAll sees every
// process that was started before it.
func (e *env) startProcess(name string, argv ...string) (*process, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return nil, errors.New("bench is stopping")
	}
	p, err := startProcess(e.dir, name, argv...)
	if err != nil {
		return nil, err
	}
	e.live = append(e.live, p)
	return p, nil
}

// adopt follows a process another started (the new relay of an upgrade)
// and remembers it for stopAll.
func (e *env) adopt(name string, pid int, logPath string) (*process, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := adoptProcess(name, pid, logPath)
	if err != nil {
		return nil, err
	}
	e.live = append(e.live, p)
	return p, nil
}

// stopAll stops every process that is still running. The bench calls it on
// the way out and on SIGINT/SIGTERM: the forwarders run in process groups of
// their own and would not see the terminal's signal.
func (e *env) stopAll() {
	e.mu.Lock()
	live := e.live
	e.live = nil
	e.stopping = true
	e.mu.Unlock()
	for _, p := range live {
		if p.alive() == nil {
			_ = p.stop(2 * time.Second)
		}
	}
}
