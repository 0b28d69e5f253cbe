//go:build !linux

package ftppassive

import (
	"errors"
	"os"
)

var errNoSharedPorts = errors.New("ftppassive: shared data-port tables need Linux (memfd)")

// NewSharedPorts is Linux-only.
func NewSharedPorts(first, last uint16) (*Ports, error) { return nil, errNoSharedPorts }

// OpenPorts is Linux-only.
func OpenPorts(f *os.File, first, last uint16) (*Ports, error) { return nil, errNoSharedPorts }

// Close does nothing for a private table.
func (p *Ports) Close() error { return nil }

func dupFile(*os.File) (*os.File, error) { return nil, errNoSharedPorts }

// processAlive: without a way to ask, every owner is taken as alive.
func processAlive(int) bool { return true }
