package main

import "syscall"

// wantFiles is the descriptor limit the bench asks for. The idle scenario
// holds 10 000 connections: 20 000 descriptors in the bench (client and
// backend ends) and as many in the forwarder, which inherits the limit.
const wantFiles = 1 << 17

// raiseFileLimit lifts RLIMIT_NOFILE toward wantFiles: the hard limit too
// when the bench may (root), else the soft limit up to the hard one. It
// returns the soft limit in force. Setting it explicitly also stops Go from
// restoring the original soft limit in the processes the bench starts.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur >= wantFiles {
		return lim.Cur
	}
	if lim.Max < wantFiles {
		raised := syscall.Rlimit{Cur: wantFiles, Max: wantFiles}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return wantFiles
		}
	}
	soft := syscall.Rlimit{Cur: min(lim.Max, wantFiles), Max: lim.Max}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &soft) != nil {
		return lim.Cur
	}
	return soft.Cur
}
