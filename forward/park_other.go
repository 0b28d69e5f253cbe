//go:build !linux

package forward

import (
	"errors"
	"sync/atomic"
)

// parker is Linux only (epoll); elsewhere idle directions wait in the
// netpoller with their goroutine, and newParker reports that.
type parker struct {
	parked, running atomic.Int64
	noBare          bool
}

const (
	dirRunning int32 = iota
	dirParked
)

var errWouldPark = errors.New("forward: direction idle, park it")

func newParker() (*parker, error)           { return nil, errors.New("forward: parking needs epoll") }
func (pk *parker) park(d *direction) error  { return errors.New("forward: parking needs epoll") }
func (pk *parker) unpark(d *direction) bool { return d.state.CompareAndSwap(dirParked, dirRunning) }
func (pk *parker) wake(d *direction)        {}
func (pk *parker) parkBare(p *pair) bool    { return false }
func (pk *parker) repark(d *direction)      {}
func (pk *parker) close() error             { return nil }
func (pk *parker) crowded() bool            { return false }
func (d *direction) settle()                {}
