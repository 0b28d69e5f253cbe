package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// The soak's goroutine check: goroutines counted by where they wait (a
// class), the relay's bounded pools held to their own bounds, every other
// class held to its count at the baseline. A total with an allowance for
// the pools (16 idle workers per listener ever configured) let a leak of a
// goroutine per reload or upgrade pass unseen; a class that grows by one
// does not.

// stackModule prefixes the relay's own functions in a traceback.
const stackModule = "github.com/edgerelay/relay/"

// idleWorker is the class of a connection worker waiting for the next
// connection (forward's connWorker, kept up to maxIdleWorkers per
// listener for their grown stacks).
const idleWorker = "forward.(*Listener).connWorker [select]"

// forwardIdleWorkers is forward's maxIdleWorkers: how many idle connection
// workers one running TCP-side listener (tcp, raw, ftp, tunnel) keeps.
const forwardIdleWorkers = 16

// runtimeClass prefixes the class of a goroutine whose stack is all the
// Go runtime's (GC workers, the scavenger, the finalizer): started as the
// runtime needs them, up to about one per CPU, none of the relay's.
const runtimeClass = "runtime's own: "

// adminConnClass is the class of the admin endpoint's HTTP connections
// (goroutines started by net/http: a connection's and its background
// read's), which end once the bench's scrape has been answered (no
// keep-alive) but may still be on their way out at a dump right after it.
const adminConnClass = "net/http: the admin endpoint's connections"

// stackCounts counts the goroutines of a Go traceback (a SIGQUIT dump) by
// class: their innermost frame in the relay (its packages or main), else
// the function they were started with (a library's or the runtime's own
// goroutine), and their state. Goroutine 0, a thread's scheduler stack and
// no goroutine, is not counted.
func stackCounts(dump string) map[string]int {
	counts := map[string]int{}
	for _, block := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") || strings.HasPrefix(lines[0], "goroutine 0 ") {
			continue
		}
		counts[stackClass(lines)]++
	}
	return counts
}

// stackClass names one goroutine's block: header line, then frames.
func stackClass(lines []string) string {
	state := ""
	if i, j := strings.IndexByte(lines[0], '['), strings.LastIndexByte(lines[0], ']'); i >= 0 && j > i {
		state = lines[0][i+1 : j]
		if k := strings.IndexByte(state, ','); k >= 0 { // "IO wait, 2 minutes", "select, locked to thread"
			state = state[:k]
		}
	}
	var funcs []string // innermost first, without arguments
	for _, l := range lines[1:] {
		if l == "" || l[0] == '\t' || l[0] == ' ' || strings.HasPrefix(l, "created by ") || strings.HasPrefix(l, "...") {
			continue
		}
		if i := strings.LastIndexByte(l, '('); i > 0 {
			l = l[:i]
		}
		funcs = append(funcs, l)
	}
	if n := len(funcs); n > 1 && funcs[n-1] == "runtime.goexit" {
		funcs = funcs[:n-1]
	}
	if len(funcs) == 0 {
		return lines[0]
	}
	for _, f := range funcs {
		if strings.HasPrefix(f, stackModule) || strings.HasPrefix(f, "main.") {
			return strings.TrimPrefix(f, stackModule) + " [" + state + "]"
		}
	}
	outer := funcs[len(funcs)-1] // the function the goroutine was started with
	switch {
	case strings.HasPrefix(outer, "net/http."):
		return adminConnClass
	case strings.HasPrefix(outer, "runtime."):
		return runtimeClass + outer + " [" + state + "]"
	}
	return outer + " [" + state + "]"
}

// stackBounds is what the bounded pools of a relay process may hold,
// class by class, with the config it runs at the end: idle connection
// workers per listener running then, the runtime's goroutines up to the
// CPUs (or what the baseline had), the admin endpoint's connections of a
// scrape. The splice pipe pool holds descriptors, no goroutine; the
// front's loop, the parker, the UDP relays' loops are one per pool or
// listener and held to the baseline like everything else.
func stackBounds(base map[string]int, listeners int) map[string]int {
	bounds := map[string]int{idleWorker: forwardIdleWorkers * listeners, adminConnClass: soakSlack}
	for class, n := range base {
		if strings.HasPrefix(class, runtimeClass) {
			bounds[class] = max(n, runtime.NumCPU())
		}
	}
	return bounds
}

// runtimeBound bounds a runtime class absent from the baseline.
func runtimeBound(class string) (int, bool) {
	if strings.HasPrefix(class, runtimeClass) {
		return runtime.NumCPU(), true
	}
	return 0, false
}

// compareClasses says which classes (goroutines by where they wait,
// descriptors by kind) the end holds more of than they may: a pool (in
// bounds, or the runtime's own goroutines) more than its bound, any other
// class more than at the baseline.
func compareClasses(base, end, bounds map[string]int) []string {
	var out []string
	for class, n := range end {
		bound, pool := bounds[class]
		if !pool {
			bound, pool = runtimeBound(class)
		}
		switch {
		case pool && n > bound:
			out = append(out, fmt.Sprintf("%d× %s, more than its bound %d", n, class, bound))
		case !pool && n > base[class]:
			out = append(out, fmt.Sprintf("%d× %s at the end, %d at the baseline", n, class, base[class]))
		}
	}
	sort.Strings(out)
	return out
}

// summarizeCounts lists classes most first: "12× forward.(*Listener).acceptLoop [IO wait]; ...".
func summarizeCounts(counts map[string]int) string {
	type row struct {
		where string
		n     int
	}
	var rows []row
	for w, n := range counts {
		rows = append(rows, row{w, n})
	}
	sort.Slice(rows, func(i, j int) bool {
		return rows[i].n > rows[j].n || rows[i].n == rows[j].n && rows[i].where < rows[j].where
	})
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%d× %s", r.n, r.where))
	}
	return strings.Join(out, "; ")
}

// forwardListeners counts the listeners of the config at path that run a
// forward.Listener (every mode but udp), each with its idle workers.
func forwardListeners(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if mode, ok := strings.CutPrefix(l, "    mode: "); ok && strings.TrimSpace(mode) != "udp" {
			n++
		}
	}
	return n, nil
}

func sumCounts(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// restartForBaseline takes the baseline of the goroutine check: each
// process, quiet after the first round, is dumped with SIGQUIT (which
// ends it; a Go process has no other way to show its stacks from
// outside) and started again on the same config, the venue first. What
// its log held at level error, and its reload counts, are kept first, as
// an upgrade keeps its old process's. The descriptors' baseline stays the
// first process's: a restarted process makes its once-made things again
// in the second round.
func restartForBaseline(e *env, in *instance, u *upgrader) ([]map[string]int, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var stacks []map[string]int
	var failures []string
	for i, old := range in.processes() {
		m, err := scrape(in.admins[i])
		if err != nil {
			return nil, append(failures, fmt.Sprintf("baseline: %s: %v", old.name, err))
		}
		u.reloads += int64(m[`relay_reloads_total{result="success"}`])
		u.failed += int64(m[`relay_reloads_total{result="failure"}`])
		if lines := errorLines(old.logPath); len(lines) > 0 {
			failures = append(failures, fmt.Sprintf("%s logged %d line(s) at level error in the first round, first: %s", old.name, len(lines), lines[0]))
		}
		counts, err := goroutineDump(old)
		if err != nil {
			return nil, append(failures, "baseline: "+err.Error())
		}
		// The restarted process logs to the same file: the dump is kept
		// beside it.
		kept := strings.TrimSuffix(old.logPath, ".log") + "-baseline.log"
		if err := os.Rename(old.logPath, kept); err != nil {
			return nil, append(failures, "baseline: "+err.Error())
		}
		fmt.Printf("%s at the baseline (dump in %s): %s\n", old.name, kept, summarizeCounts(counts))
		p, err := e.startProcess(old.name, u.bin, "-config", in.configs[i])
		if err != nil {
			return nil, append(failures, "baseline: restart: "+err.Error())
		}
		in.replace(i, p)
		if err := awaitReady(in.admins[i], 10*time.Second); err != nil {
			return nil, append(failures, fmt.Sprintf("baseline: %s restarted: %v", p.name, err))
		}
		stacks = append(stacks, counts)
	}
	return stacks, failures
}

// awaitReady polls the admin endpoint's /healthz until it says every
// listener is bound (200), for up to d: a process the bench started has no
// other signal of that.
func awaitReady(admin string, d time.Duration) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	until := time.Now().Add(d)
	for {
		resp, err := c.Get("http://" + admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/healthz: %s", resp.Status)
		}
		if time.Now().After(until) {
			return fmt.Errorf("not ready after %s: %w", d, err)
		}
		time.Sleep(50 * time.Millisecond) // polling: the process signals nothing else
	}
}
