package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The soak: what a relay holds after hours of mixed traffic and reloads.
//
// A benchmark run lasts seconds and starts a fresh forwarder per scenario;
// a leak of one descriptor per reload, or a goroutine per FTP transfer,
// passes it unseen. go run ./bench -soak 30m runs every scenario's
// measurement round after round through ONE relay (one box office and one
// venue process, for the tunnel), rewrites and reloads its config every
// few seconds while the traffic runs, and samples what the processes hold.
// It passes when
//   - every round's bytes, datagrams and replies arrived intact (the
//     scenarios' own checks), every reload was taken and the relay never
//     exited;
//   - once the traffic stops and the config is back as it started, the
//     descriptors go back to what the relay held after the first round
//     (which made what a relay makes once: the front's loop, pools),
//     beyond the splice pipe pool, UDP sessions' timeout included; and
//     the goroutines, counted by where they wait, to the first round's
//     class by class, the bounded pools to their own bounds
//     (soakstacks.go);
//   - the resident memory of the last rounds is not above the first
//     rounds' by more than soakRSSGrowth (a leak grows with every round);
//   - the relay logged nothing at level error.
// With -soak-upgrade-every N it also upgrades the binary in place under
// the traffic (soakupgrade.go), and the old processes must exit in time.
// Sizes are the -quick ones, so a round takes about a minute.

// soakReloadEvery is how often the relay's config is rewritten and
// reloaded while the traffic runs.
const soakReloadEvery = 3 * time.Second

// soakSettle bounds the wait, after the last round, for the relay to let
// go of what the traffic made it hold: the UDP session timeout of the
// bench's config (30 s) and some.
const soakSettle = 45 * time.Second

// soakRSSGrowth is how much the median RSS of the last third of the rounds
// may exceed that of the first third: a heap settles in the first rounds
// and then stays; a leak grows on.
const soakRSSGrowth = 1.25

// soakSlack is how many goroutines above the idle count still count as
// settled: the admin endpoint's own connections for the scrape.
const soakSlack = 4

// soakPoolPipes is how many pipe descriptors a relay process may keep
// once settled: the splice pipe pool's free list (forward's
// defaultMaxIdlePipes, 64 pipes of two ends), which is a bounded cache,
// not a leak.
const soakPoolPipes = 2 * 64

// soakSample is what the relay's processes hold at one moment.
type soakSample struct {
	at         time.Duration // since the soak started
	fds        int64         // every descriptor, pipes included
	pipes      int64         // descriptors that are pipe ends: the splice pipe pool
	rssKiB     int64
	threads    int64
	goroutines int64
	perProc    []int64 // goroutines by process, as in.processes()
	reloads    int64   // successful reloads so far
	failed     int64   // failed reloads so far
	upgrades   int     // binary upgrades so far
}

func soak(e *env, o options, d time.Duration, scenarios []scenario) int {
	stopOnSignal(e)
	fwd, version, err := relayUnderTest(e, o.relayBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	relay := fwd.(relayFwd)
	relay.admin = true
	var routes []route
	var running []scenario
	defer func() {
		for _, s := range running {
			s.teardown()
		}
	}()
	for _, s := range scenarios {
		rs, err := s.setup(e)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: soak: %s backends: %v\n", s.name(), err)
			return 1
		}
		running = append(running, s)
		routes = append(routes, rs...)
	}
	in, err := relay.start(e, routes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: soak: start the relay:", err)
		return 1
	}
	defer in.stop()
	upgrades := "no upgrades"
	if o.soakUpgradeEvery > 0 {
		upgrades = fmt.Sprintf("a binary upgrade after every %d reloads (from the second round)", o.soakUpgradeEvery)
	}
	fmt.Printf("relay soak, %s: %s for %s, %d scenarios, a reload every %s, %s\n",
		time.Now().Format("2006-01-02 15:04"), version, d, len(running), soakReloadEvery, upgrades)

	start := time.Now()
	up := &upgrader{e: e, bin: relay.bin, every: o.soakUpgradeEvery, start: start}
	idle, err := sampleRelay(in, start, up)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: soak:", err)
		return 1
	}
	var bl soakBaseline
	for _, p := range in.processes() {
		kinds, err := fdKinds(p.pid())
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: soak:", err)
			return 1
		}
		bl.startPipes = append(bl.startPipes, kinds[pipeKind])
	}
	rl, err := newReloader(e, in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: soak:", err)
		return 1
	}
	printSoakHeader()
	printSoakSample("start", idle)

	var failures []string
	var rounds []soakSample
	round := 0
	// traffic runs rounds, with the reloads (and upgrades, with u) beside
	// them, until the round limit or the deadline, then puts the config
	// back as it started.
	traffic := func(last int, deadline time.Time, u *upgrader) {
		stop := make(chan struct{})
		reloadErrs := make(chan error, 1)
		go func() { reloadErrs <- reloadLoop(in, rl, u, stop) }()
		dead := false
		for round < last && (round == 0 || time.Now().Before(deadline)) {
			round++
			for _, s := range running {
				if _, err := s.measure(e, in); err != nil {
					failures = append(failures, fmt.Sprintf("round %d, %s: %v", round, s.name(), err))
				}
				if jm, ok := s.(jointMeasurer); ok {
					if _, errs := jm.measureJoint(e, []*instance{in}); errs[0] != nil {
						failures = append(failures, fmt.Sprintf("round %d, %s: %v", round, s.name(), errs[0]))
					}
				}
				if err := up.alive(in); err != nil {
					failures = append(failures, fmt.Sprintf("round %d: %v", round, err))
					dead = true
					break
				}
			}
			if dead {
				break
			}
			smp, err := sampleRelay(in, start, up)
			if err != nil {
				failures = append(failures, fmt.Sprintf("round %d: %v", round, err))
				break
			}
			rounds = append(rounds, smp)
			printSoakSample(strconv.Itoa(round), smp)
			failures = append(failures, up.overdue(false)...)
		}
		close(stop)
		if err := <-reloadErrs; err != nil {
			failures = append(failures, err.Error())
		}
		if in.alive() == nil {
			if err := rl.restore(in); err != nil {
				failures = append(failures, err.Error())
			}
		}
	}

	// The first round makes what a relay makes once (the front's loop on
	// the first tcp listener, pools, the collectors' caches): what it
	// holds once that round has ended is the baseline. No upgrade in it:
	// the baseline is a process that has carried every scenario.
	traffic(1, start.Add(d), nil)
	if in.alive() == nil && len(failures) == 0 {
		if bl.sample, err = quiet(in, start, up); err != nil {
			failures = append(failures, "after the first round: "+err.Error())
		} else {
			printSoakSample("quiet", bl.sample)
			for _, p := range in.processes() {
				kinds, err := fdKinds(p.pid())
				if err != nil {
					failures = append(failures, "after the first round: "+err.Error())
				}
				bl.kinds = append(bl.kinds, kinds)
			}
			var fails []string
			bl.stacks, fails = restartForBaseline(e, in, up)
			failures = append(failures, fails...)
		}
	}
	if len(failures) == 0 {
		traffic(100_000, start.Add(d), up)
	}
	// The old processes drain; the last ones' time is not up yet.
	failures = append(failures, up.overdue(true)...)
	failures = append(failures, up.witnessFailures()...)
	if msg := rssGrowth(rounds[min(1, len(rounds)):]); msg != "" {
		failures = append(failures, msg)
	}
	if n := len(rounds); n > 0 && (rounds[n-1].failed > 0 || rounds[n-1].reloads == 0) {
		failures = append(failures, fmt.Sprintf("reloads: %d taken, %d failed (see the relay's log)", rounds[n-1].reloads, rounds[n-1].failed))
	}
	for _, p := range in.processes() { // an upgrade's processes share their predecessor's log
		if lines := errorLines(p.logPath); len(lines) > 0 {
			failures = append(failures, fmt.Sprintf("%s logged %d line(s) at level error, first: %s", p.name, len(lines), lines[0]))
		}
	}
	if in.alive() == nil && bl.stacks != nil {
		failures = append(failures, settleCheck(in, start, up, bl)...)
	}
	var last soakSample
	if n := len(rounds); n > 0 {
		last = rounds[n-1]
	}
	fmt.Printf("\n%d rounds, %d reloads (%d failed), %d upgrades in %s.\n", len(rounds), last.reloads, last.failed, last.upgrades,
		time.Since(start).Round(time.Second))
	if first, end, ok := rssThirds(rounds[min(1, len(rounds)):]); ok {
		fmt.Printf("RSS, median of the first third of the rounds after the first: %.1f MiB; of the last third: %.1f MiB.\n",
			float64(first)/1024, float64(end)/1024)
	}
	if o.soakUpgradeEvery > 0 {
		fmt.Println(up.summary())
	}
	fmt.Printf("The reload loop's ticks were taken up to %s late (a stall of the bench, i.e. of the machine, if much over a millisecond).\n",
		rl.late.Round(time.Millisecond))
	if len(failures) == 0 {
		pass := "PASS: every byte intact, every reload taken, descriptors and goroutines back to the first round's, memory flat, no error logged"
		if o.soakUpgradeEvery > 0 {
			pass += ", every upgrade served and every old process gone in time"
		}
		fmt.Println(pass + ".")
		return 0
	}
	fmt.Println("FAIL:")
	for _, f := range failures {
		fmt.Println("  -", f)
	}
	return 1
}

// reloadLoop rewrites every process's config and sends it SIGHUP every
// soakReloadEvery until stop, cycling through reloadVariant's changes;
// the reloads counted and failed are checked from the metrics. The ticks
// u says are due upgrade the binary instead.
func reloadLoop(in *instance, rl *reloader, u *upgrader, stop <-chan struct{}) error {
	t := time.NewTicker(soakReloadEvery)
	defer t.Stop()
	reloads := 0
	upgraded := false // the tick after an upgrade waited for it
	for n := 0; n < 100_000; n++ {
		select {
		case <-stop:
			return nil
		case tick := <-t.C:
			if !upgraded {
				rl.late = max(rl.late, time.Since(tick))
			}
		}
		upgraded = u.due(n)
		if upgraded {
			if err := u.upgrade(in); err != nil {
				return err
			}
			continue
		}
		if err := rl.reload(in, reloads); err != nil {
			return err
		}
		reloads++
	}
	return nil
}

// reloader holds each process's config as the relay started with it and a
// spare port per process for the listener the reloads add and remove.
type reloader struct {
	configs []string
	spare   []int
	// late is the longest a tick of the reload loop (not one after an
	// upgrade) waited to be taken: a stall of the bench, i.e. of the
	// machine, which the relay's figures of that moment share.
	late time.Duration
}

func newReloader(e *env, in *instance) (*reloader, error) {
	rl := &reloader{}
	for _, path := range in.configs {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		port, err := e.ports.one()
		if err != nil {
			return nil, err
		}
		rl.configs, rl.spare = append(rl.configs, string(b)), append(rl.spare, port)
	}
	return rl, nil
}

// reload writes variant n of every process's config (n < 0: the config as
// started) and sends SIGHUP.
func (rl *reloader) reload(in *instance, n int) error {
	for i, p := range in.processes() {
		text := rl.configs[i]
		if n >= 0 {
			var err error
			if text, err = reloadVariant(text, n, rl.spare[i]); err != nil {
				return fmt.Errorf("%s: %w", in.configs[i], err)
			}
		}
		if err := replaceFile(in.configs[i], text); err != nil {
			return err
		}
		if err := syscall.Kill(p.pid(), syscall.SIGHUP); err != nil {
			return fmt.Errorf("reload %d of %s: %w", n+1, p.name, err)
		}
	}
	return nil
}

// replaceFile puts text at path by renaming a new file over it, as editors
// do: a relay still reading the file for the reload before (its SIGHUP
// came late on a loaded machine) reads that one whole, never a truncated
// one ("listeners: no listeners" in a soak where the bench wrote in place).
func replaceFile(path, text string) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// reloadVariant is the config the n-th reload applies, one change from the
// one before, in a cycle of four: the default idle timeout moves (every
// listener is replaced), a tcp listener on spare is added, the timeout
// moves back (every listener replaced again), the added one is removed.
func reloadVariant(orig string, n, spare int) (string, error) {
	const from, to = "idle_timeout: 1h\n", "idle_timeout: 59m\n"
	if !strings.Contains(orig, from) || !strings.HasSuffix(orig, "\n") {
		return "", fmt.Errorf("no %q to change", strings.TrimSpace(from))
	}
	text := orig
	if phase := n % 4; phase == 0 || phase == 1 {
		text = strings.Replace(text, from, to, 1)
	}
	if phase := n % 4; phase == 1 || phase == 2 {
		// The listeners come last in the bench's configs.
		text += fmt.Sprintf("  - name: soak-extra\n    mode: tcp\n    listen: 127.0.0.1:%d\n    upstream: 127.0.0.1:9\n", spare)
	}
	return text, nil
}

// restore puts every process's config back as it started and waits until
// each process has taken it (its count of reloads rises).
func (rl *reloader) restore(in *instance) error {
	before, err := reloadCounts(in)
	if err != nil {
		return err
	}
	if err := rl.reload(in, -1); err != nil {
		return err
	}
	until := time.Now().Add(10 * time.Second)
	for {
		now, err := reloadCounts(in)
		if err != nil {
			return err
		}
		taken := true
		for i := range now {
			taken = taken && now[i] > before[i]
		}
		if taken {
			return nil
		}
		if time.Now().After(until) {
			return fmt.Errorf("the config as started was not reloaded within 10 s (reloads %v, before %v)", now, before)
		}
		time.Sleep(50 * time.Millisecond) // polling the metric: the reload has no other signal outside the process
	}
}

// reloadCounts is each process's count of successful reloads.
func reloadCounts(in *instance) ([]int64, error) {
	var out []int64
	for i, p := range in.processes() {
		m, err := scrape(in.admins[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out = append(out, int64(m[`relay_reloads_total{result="success"}`]))
	}
	return out, nil
}

// quiet waits until no process has a connection, session, data port or
// queued job open or draining (their gauges on /metrics), then until what
// the processes hold stops changing, and returns that sample.
func quiet(in *instance, start time.Time, u *upgrader) (soakSample, error) {
	until := time.Now().Add(soakSettle)
	var prev soakSample
	for {
		open, err := openGauges(in)
		if err != nil {
			return prev, err
		}
		smp, err := sampleRelay(in, start, u)
		if err != nil {
			return smp, err
		}
		if open == 0 && smp.fds == prev.fds && smp.goroutines == prev.goroutines {
			return smp, nil
		}
		if time.Now().After(until) {
			return smp, fmt.Errorf("not quiet after %s: %g connections, sessions, data ports or jobs still open", soakSettle, open)
		}
		prev = smp
		time.Sleep(250 * time.Millisecond) // polling gauges: no event leaves the process
	}
}

// openGauges sums, over the processes, the gauges of what traffic holds
// open: connections (also draining), UDP sessions, FTP data ports, raw
// queues.
func openGauges(in *instance) (float64, error) {
	var open float64
	for i, p := range in.processes() {
		m, err := scrape(in.admins[i])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.name, err)
		}
		for k, v := range m {
			for _, g := range []string{"relay_connections_active{", "relay_draining_connections{",
				"relay_udp_sessions_active{", "relay_ftp_data_ports_in_use{", "relay_raw_queue_length{"} {
				if strings.HasPrefix(k, g) {
					open += v
				}
			}
		}
	}
	return open, nil
}

// settle waits, without traffic, until no process has a connection,
// session, data port or queued job open (openGauges), what they hold has
// stopped changing between two samples, and it is no more descriptors
// and goroutines than before the first round beyond the bounded pools;
// or until soakSettle passes. The gauges first: a UDP session the last
// upgrade's witness opened lives its timeout on, and its goroutines sat
// within the pools' allowance, so a settle on the totals alone let the
// goroutine dump find it ("3× udpstream.(*sysConn).readBatch at the end,
// 2 at the baseline": the session's relayReplies).
func settle(in *instance, start time.Time, u *upgrader, idle soakSample) (bool, soakSample, error) {
	until := time.Now().Add(soakSettle)
	var prev soakSample
	for {
		open, err := openGauges(in)
		if err != nil {
			return false, prev, err
		}
		smp, err := sampleRelay(in, start, u)
		if err != nil {
			return false, smp, err
		}
		procs := in.processes()
		pipes := min(smp.pipes-idle.pipes, soakPoolPipes*int64(len(procs)))
		ok := open == 0 && smp.fds == prev.fds && smp.goroutines == prev.goroutines && smp.fds-pipes <= idle.fds
		for i := range procs {
			ok = ok && smp.perProc[i] <= idle.perProc[i]+soakSlack+cachedWorkers(in.configs[i])
		}
		if ok {
			return true, smp, nil
		}
		if time.Now().After(until) {
			return false, smp, nil
		}
		prev = smp
		time.Sleep(250 * time.Millisecond) // polling gauges and what the kernel counts: no event leaves the process
	}
}

// soakBaseline is what the relay held once the first round had ended, to
// which the end is compared.
type soakBaseline struct {
	sample     soakSample
	startPipes []int            // pipe ends by process before any traffic: none of them the pipe pool's
	kinds      []map[string]int // descriptors by kind (fdKinds), by process
	stacks     []map[string]int // goroutines by class (stackCounts), by process
}

// settleCheck waits for the relay to let go of what the traffic made it
// hold and says what it kept beyond the baseline: descriptors by kind
// (pipes up to the pipe pool's bound), goroutines by where they wait,
// from a SIGQUIT dump (which ends the processes), class by class, the
// bounded pools to their bounds (compareClasses).
func settleCheck(in *instance, start time.Time, u *upgrader, bl soakBaseline) []string {
	var failures []string
	settled, last, err := settle(in, start, u, bl.sample)
	if err != nil {
		return []string{err.Error()}
	}
	printSoakSample("settled", last)
	if !settled {
		failures = append(failures, fmt.Sprintf("after %s without traffic the relay still holds %d descriptors and %d goroutines (idle: %d and %d)",
			soakSettle, last.fds, last.goroutines, bl.sample.fds, bl.sample.goroutines))
	}
	for i, p := range in.processes() {
		kinds, err := fdKinds(p.pid())
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		if grown := compareClasses(bl.kinds[i], kinds, map[string]int{pipeKind: bl.startPipes[i] + soakPoolPipes}); len(grown) > 0 {
			failures = append(failures, fmt.Sprintf("%s holds more descriptors than at the baseline: %s; all at the end: %s; at the baseline: %s",
				p.name, strings.Join(grown, "; "), summarizeCounts(kinds), summarizeCounts(bl.kinds[i])))
		}
	}
	for i, p := range in.processes() {
		listeners, err := forwardListeners(in.configs[i])
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		counts, err := goroutineDump(p)
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		base := bl.stacks[i]
		bounds := stackBounds(base, listeners)
		fmt.Printf("%s at the end: %d goroutines in %d classes (%d in %d at the baseline), %d of them idle connection workers (at most %d: %d listeners)\n",
			p.name, sumCounts(counts), len(counts), sumCounts(base), len(base), counts[idleWorker], bounds[idleWorker], listeners)
		if grown := compareClasses(base, counts, bounds); len(grown) > 0 {
			failures = append(failures, fmt.Sprintf("%s holds more goroutines than at the baseline: %s; all at the end: %s; at the baseline: %s",
				p.name, strings.Join(grown, "; "), summarizeCounts(counts), summarizeCounts(base)))
		}
	}
	return failures
}

// cachedWorkers is how many idle connection workers the relay may keep
// with the config at path, for settle's wait: forward's maxIdleWorkers
// per listener that has them.
func cachedWorkers(path string) int64 {
	n, err := forwardListeners(path)
	if err != nil {
		return 0
	}
	return forwardIdleWorkers * int64(n)
}

// rssGrowth compares the median RSS of the last third of the rounds with
// the first third's; "" when it stayed within soakRSSGrowth or there are
// too few rounds to tell.
func rssGrowth(rounds []soakSample) string {
	first, last, ok := rssThirds(rounds)
	if !ok || float64(last) <= soakRSSGrowth*float64(first) {
		return ""
	}
	third := len(rounds) / 3
	return fmt.Sprintf("resident memory grew from %d KiB (median of the first %d rounds) to %d KiB (the last %d)",
		first, third, last, third)
}

// rssThirds is the median RSS of the first third of the rounds and of the
// last third; not ok with fewer than 6 rounds, too few to tell.
func rssThirds(rounds []soakSample) (first, last int64, ok bool) {
	if len(rounds) < 6 {
		return 0, 0, false
	}
	third := len(rounds) / 3
	median := func(s []soakSample) int64 {
		v := make([]int64, len(s))
		for i, x := range s {
			v[i] = x.rssKiB
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	return median(rounds[:third]), median(rounds[len(rounds)-third:]), true
}

// sampleRelay reads what the instance's processes hold: each one alone,
// not its process group, which holds the old processes of upgrades while
// they drain. The reload counts add what u's processes upgraded away had
// counted (u may be nil).
func sampleRelay(in *instance, start time.Time, u *upgrader) (soakSample, error) {
	if u != nil {
		u.mu.Lock() // no upgrade between the processes read and the metrics scraped
		defer u.mu.Unlock()
	}
	s := soakSample{at: time.Since(start)}
	for i, p := range in.processes() {
		m := pidMemory(p.pid())
		s.fds += m.fds
		s.rssKiB += m.rssKiB
		s.pipes += pipeEnds(p.pid())
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid())); err == nil {
			s.threads += statusNumber(b, "Threads:")
		}
		metrics, err := scrape(in.admins[i])
		if err != nil {
			return s, fmt.Errorf("%s: %w", p.name, err)
		}
		s.goroutines += int64(metrics["go_goroutines"])
		s.perProc = append(s.perProc, int64(metrics["go_goroutines"]))
		s.reloads += int64(metrics[`relay_reloads_total{result="success"}`])
		s.failed += int64(metrics[`relay_reloads_total{result="failure"}`])
	}
	if u != nil {
		s.upgrades = u.done
		s.reloads += u.reloads
		s.failed += u.failed
	}
	return s, nil
}

func printSoakHeader() {
	fmt.Printf("\n| round | at | descriptors | of them pipes | threads | goroutines | RSS, MiB | reloads | upgrades |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
}

func printSoakSample(label string, s soakSample) {
	fmt.Printf("| %s | %s | %d | %d | %d | %d | %.1f | %d | %d |\n", label, s.at.Round(time.Second), s.fds, s.pipes, s.threads,
		s.goroutines, float64(s.rssKiB)/1024, s.reloads, s.upgrades)
}
