package main

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// TestUpgradedDrainHardStopSaysSo: the process an upgrade replaced cuts
// what is left open at reload.hard_stop_after, as a reload's retired
// listener does, and says so (how many, and why), as that one does; it cut
// them without a word, and a box office saw its tunnel drop for no reason
// the log gave.
func TestUpgradedDrainHardStopSaysSo(t *testing.T) {
	u := upgradeHolding(t, "reload: {hard_stop_after: 500ms}\n")
	u.logs.Wait(t, "reload.hard_stop_after reached", `"cut":1`)
	_ = u.live.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := u.live.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the held connection after hard_stop_after: %v, want EOF", err)
	}
	if err := u.old.cmd.Wait(); err != nil {
		t.Errorf("old process: %v, want exit 0", err)
	}
	_ = syscall.Kill(u.successor, syscall.SIGTERM)
}
