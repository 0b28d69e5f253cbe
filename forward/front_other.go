//go:build !linux

package forward

import (
	"errors"
	"net"

	"github.com/rs/zerolog"
)

// The front is Linux only (epoll); elsewhere the engine accepts every
// connection.
type (
	front      struct{}
	frontGroup struct{}
)

func newFront() (*front, error)            { return nil, errors.New("forward: the front needs epoll") }
func (f *front) close()                    {}
func (f *front) post(func()) bool          { return false }
func (f *front) removeListens(*frontGroup) {}
func (l *Listener) serveFront() bool       { return false }

func frontSockets([]*net.TCPListener, zerolog.Logger) []int { return nil }
func (l *Listener) closeFrontFDs()                          {}
