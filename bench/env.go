package main

import (
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

	mu   sync.Mutex // guards the following
	live []*process // every process started, so an interrupt can stop them
}

// maxConns is how many proxied connections every forwarder can hold within
// the descriptor limit: two descriptors each, and 800 to spare for
// listeners, logs, and HAProxy's splice pipes.
func (e *env) maxConns() int { return (e.files - 800) / 2 }

// startProcess starts a forwarder process and remembers it for stopAll.
func (e *env) startProcess(name string, argv ...string) (*process, error) {
	p, err := startProcess(e.dir, name, argv...)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.live = append(e.live, p)
	e.mu.Unlock()
	return p, nil
}

// stopAll stops every process that is still running. The bench calls it on
// the way out and on SIGINT/SIGTERM: the forwarders run in process groups of
// their own and would not see the terminal's signal.
func (e *env) stopAll() {
	e.mu.Lock()
	live := e.live
	e.live = nil
	e.mu.Unlock()
	for _, p := range live {
		if p.alive() == nil {
			_ = p.stop(2 * time.Second)
		}
	}
}
