package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// Binary upgrades during the soak (-soak-upgrade-every N): after every N
// reloads the reload loop upgrades every process of the relay in place
// instead, the venue's first, the way an admin does, with `relay upgrade
// -config FILE` (SIGUSR2 to the process serving FILE, then waiting until
// another process alone holds its first listen address), while the
// scenarios' traffic runs on. The soak then follows the new process: its
// pid is the one sampled, reloaded and dumped at the end, and its reload
// counts add to the old one's. The old process must be gone within
// soakDrainBound of the upgrade; one still alive then is named with what
// it holds. A connection the upgrade refused or cut, a byte or datagram it
// lost, fails the scenario that carried it, as always, and the witness
// (soakwitness.go) carries traffic across every upgrade whatever scenario
// runs then.
//
// Why upgrades are off by default: each one starts a fresh process, and a
// leak that grows over a whole soak in one process (what the memory
// check is for) would be cut short every few rounds.

// soakDrainMargin is what the old process of an upgrade may take beyond
// its UDP sessions' timeout: the connections it had accepted end with
// their scenario's transfer (tcp-idle holds 2000 for up to about 20 s, the
// FTP download and the tunnel's transfers take seconds), on two cores
// shared with the traffic.
const soakDrainMargin = 30 * time.Second

// soakDrainBound is how long after an upgrade its old process may live
// on: its UDP sessions answer the replies still on their way for the
// session timeout after the client's last datagram to it (README, Binary
// upgrade), and then the margin.
const soakDrainBound = benchUDPSessionTimeout + soakDrainMargin

// upgradeCmdTimeout is the -timeout given to relay upgrade: how long the
// new process may take to say it serves.
const upgradeCmdTimeout = 30 * time.Second

// upgrader upgrades the relay's processes in place and keeps what the old
// ones leave behind: their reload counts, and themselves until they exit.
type upgrader struct {
	e     *env
	bin   string // the relay binary, for relay upgrade
	every int    // reloads between upgrades; 0: none
	start time.Time
	bound time.Duration // how long an old process may live on after its upgrade; 0: soakDrainBound

	mu       sync.Mutex // guards the following; held through an upgrade, so that a sample sees one process in each place
	done     int        // upgrades of the whole instance completed
	reloads  int64      // reloads that processes since upgraded away had taken
	failed   int64      // and had failed
	retired  []retiree  // every old process, in upgrade order
	took     []time.Duration
	reported int      // retirees up to this index have been judged
	failures []string // what the witnesses saw go wrong
	carried  witnessed
}

// retiree is the old process of one upgrade.
type retiree struct {
	p  *process
	at time.Time // when the new process served in its place
}

// due reports whether the reload loop's tick n is an upgrade: one after
// every u.every reloads. A nil upgrader never upgrades.
func (u *upgrader) due(n int) bool {
	return u != nil && u.every > 0 && (n+1)%(u.every+1) == 0
}

func (u *upgrader) drainBound() time.Duration {
	if u.bound > 0 {
		return u.bound
	}
	return soakDrainBound
}

// alive is in.alive, but not in the middle of an upgrade: the old process
// may exit as soon as the new one serves, before it takes the old one's
// place in the instance.
func (u *upgrader) alive(in *instance) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return in.alive()
}

// upgrade upgrades every process of the instance in place, one after the
// other, and follows the new ones.
func (u *upgrader) upgrade(in *instance) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, old := range in.processes() {
		// The old process's admin endpoint goes to the new one: its
		// reload counts are read now, the loop sends no reload meanwhile.
		m, err := scrape(in.admins[i])
		if err != nil {
			return fmt.Errorf("upgrade %d: %s (pid %d) before: %w", u.done+1, old.name, old.pid(), err)
		}
		w, err := startWitness(in)
		if err != nil {
			return fmt.Errorf("upgrade %d: %w", u.done+1, err)
		}
		time.Sleep(witnessAround) // the witness's traffic runs before the signal, not a synchronisation
		pid, took, err := upgradeInPlace(u.bin, in.configs[i], old.pid())
		if err == nil {
			time.Sleep(witnessAround) // and after the new process serves
		}
		u.witnessed(w, fmt.Sprintf("upgrade %d of %s (pid %d)", u.done+1, old.name, old.pid()))
		if err != nil {
			return fmt.Errorf("upgrade %d: %s (pid %d), %s after the start: %w", u.done+1, old.name, old.pid(),
				time.Since(u.start).Round(time.Second), err)
		}
		at := time.Now()
		p, err := u.e.adopt(old.name, pid, old.logPath)
		if err != nil {
			return fmt.Errorf("upgrade %d: %w", u.done+1, err)
		}
		in.replace(i, p)
		u.reloads += int64(m[`relay_reloads_total{result="success"}`])
		u.failed += int64(m[`relay_reloads_total{result="failure"}`])
		u.retired = append(u.retired, retiree{p: old, at: at})
		u.took = append(u.took, took)
		fmt.Fprintf(os.Stderr, "bench: soak: upgrade %d at %s: %s pid %d serves in place of pid %d after %s\n",
			u.done+1, at.Sub(u.start).Round(time.Second), old.name, pid, old.pid(), took)
	}
	u.done++
	return nil
}

// witnessed stops a witness and keeps what it saw; u.mu is held.
func (u *upgrader) witnessed(w *witness, which string) {
	failures, carried := w.finish()
	for _, f := range failures {
		u.failures = append(u.failures, which+": "+f)
	}
	u.carried.add(carried)
}

// witnessFailures is what the witnesses saw go wrong, across every upgrade.
func (u *upgrader) witnessFailures() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.failures...)
}

// upgradeInPlace runs relay upgrade for the relay serving config, which
// must be pid, and returns the new process's pid and how long it took to
// serve.
func upgradeInPlace(bin, config string, pid int) (int, time.Duration, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "upgrade", "-config", config, "-timeout", upgradeCmdTimeout.String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("relay upgrade: %w: %s%s", err, strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
	}
	newPID, oldPID, took, err := parseUpgraded(stdout.String())
	if err != nil {
		return 0, 0, err
	}
	if oldPID != pid {
		return 0, 0, fmt.Errorf("relay upgrade signalled pid %d, not the bench's pid %d: %s", oldPID, pid, strings.TrimSpace(stdout.String()))
	}
	return newPID, took, nil
}

// parseUpgraded reads relay upgrade's line "relay upgraded: pid 812 serves
// tcp 0.0.0.0:80 in place of pid 640 after 180ms".
func parseUpgraded(out string) (newPID, oldPID int, took time.Duration, err error) {
	var proto, addr, d string
	line := strings.TrimSpace(out)
	if _, err := fmt.Sscanf(line, "relay upgraded: pid %d serves %s %s in place of pid %d after %s",
		&newPID, &proto, &addr, &oldPID, &d); err != nil {
		return 0, 0, 0, fmt.Errorf("relay upgrade said %q: %w", line, err)
	}
	if took, err = time.ParseDuration(d); err != nil {
		return 0, 0, 0, fmt.Errorf("relay upgrade said %q: %w", line, err)
	}
	return newPID, oldPID, took, nil
}

// overdue judges the old processes whose time is up by now (all of them
// when final, after waiting for each until its bound): one that exited
// passes, one still alive is a failure that names it and what it holds.
func (u *upgrader) overdue(final bool) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var failures []string
	for ; u.reported < len(u.retired); u.reported++ {
		r := u.retired[u.reported]
		deadline := r.at.Add(u.drainBound())
		if final {
			select {
			case <-r.p.exited:
			case <-time.After(time.Until(deadline)):
			}
		}
		gone := false
		select {
		case <-r.p.exited:
			gone = true
		default:
		}
		switch {
		case gone && !r.p.exitedAt.After(deadline):
		case gone:
			failures = append(failures, fmt.Sprintf("%s pid %d, upgraded away %s after the start, exited %s later (bound %s: the UDP session timeout and %s)",
				r.p.name, r.p.pid(), r.at.Sub(u.start).Round(time.Second), r.p.exitedAt.Sub(r.at).Round(time.Second),
				u.drainBound(), soakDrainMargin))
		case time.Now().Before(deadline):
			return failures // this one and the later ones are judged at a later sample
		default:
			failures = append(failures, fmt.Sprintf("%s pid %d, upgraded away %s after the start, still runs %s later (bound %s: the UDP session timeout and %s); it holds: %s",
				r.p.name, r.p.pid(), r.at.Sub(u.start).Round(time.Second), time.Since(r.at).Round(time.Second),
				u.drainBound(), soakDrainMargin, holdings(r.p.pid())))
		}
	}
	return failures
}

// summary describes the upgrades: how many, how long the new process took
// to serve, how long the old ones took to exit.
func (u *upgrader) summary() string {
	if u == nil {
		return ""
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.retired) == 0 {
		return "no upgrades."
	}
	var drains []time.Duration
	for _, r := range u.retired {
		select {
		case <-r.p.exited:
			drains = append(drains, r.p.exitedAt.Sub(r.at))
		default:
		}
	}
	took := append([]time.Duration(nil), u.took...)
	return fmt.Sprintf("%d upgrades (%d processes): the new one served after %s median, %s at most; %d old ones exited %s after it at the median, %s at most; across them %d short connections, %d echoes on connections held through them and %d request/reply datagrams, %d failures",
		u.done, len(u.retired), medianDuration(took), maxDuration(took), len(drains), medianDuration(drains), maxDuration(drains),
		u.carried.conns, u.carried.echoes, u.carried.datagrams, len(u.failures))
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2].Round(time.Millisecond)
}

func maxDuration(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m.Round(time.Millisecond)
}
