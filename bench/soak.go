package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
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
//     descriptors and goroutines go back to what the relay held after the
//     first round (which made what a relay makes once: the front's loop,
//     pools), beyond its two bounded caches (the splice pipe pool, 16 idle
//     connection workers per listener); UDP sessions' timeout included;
//   - the resident memory of the last rounds is not above the first
//     rounds' by more than soakRSSGrowth (a leak grows with every round);
//   - the relay logged nothing at level error.
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
// settled: the admin endpoint's own connection for the scrape.
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
	perProc    []int64 // goroutines by process, as in.procs
	reloads    int64   // successful reloads so far
	failed     int64   // failed reloads so far
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
	fmt.Printf("relay soak, %s: %s for %s, %d scenarios, a reload every %s\n",
		time.Now().Format("2006-01-02 15:04"), version, d, len(running), soakReloadEvery)

	start := time.Now()
	idle, err := sampleRelay(in, start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: soak:", err)
		return 1
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
	// traffic runs rounds, with the reloads beside them, until the round
	// limit or the deadline, then puts the config back as it started.
	traffic := func(last int, deadline time.Time) {
		stop := make(chan struct{})
		reloadErrs := make(chan error, 1)
		go func() { reloadErrs <- reloadLoop(in, rl, stop) }()
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
				if err := in.alive(); err != nil {
					failures = append(failures, fmt.Sprintf("round %d: %v", round, err))
					break
				}
			}
			if in.alive() != nil {
				break
			}
			smp, err := sampleRelay(in, start)
			if err != nil {
				failures = append(failures, fmt.Sprintf("round %d: %v", round, err))
				break
			}
			rounds = append(rounds, smp)
			printSoakSample(strconv.Itoa(round), smp)
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
	// holds once that round has ended is the baseline.
	traffic(1, start.Add(d))
	var base soakSample
	var baseHeld []string
	if in.alive() == nil && len(failures) == 0 {
		if base, err = quiet(in, start); err != nil {
			failures = append(failures, "after the first round: "+err.Error())
		} else {
			printSoakSample("quiet", base)
			for _, p := range in.procs {
				baseHeld = append(baseHeld, holdings(p.pid()))
			}
		}
	}
	if len(failures) == 0 {
		traffic(100_000, start.Add(d))
	}
	if msg := rssGrowth(rounds[min(1, len(rounds)):]); msg != "" {
		failures = append(failures, msg)
	}
	if n := len(rounds); n > 0 && (rounds[n-1].failed > 0 || rounds[n-1].reloads == 0) {
		failures = append(failures, fmt.Sprintf("reloads: %d taken, %d failed (see the relay's log)", rounds[n-1].reloads, rounds[n-1].failed))
	}
	for _, p := range in.procs {
		if lines := errorLines(p.logPath); len(lines) > 0 {
			failures = append(failures, fmt.Sprintf("%s logged %d line(s) at level error, first: %s", p.name, len(lines), lines[0]))
		}
	}
	if in.alive() == nil && baseHeld != nil {
		failures = append(failures, settleCheck(in, start, base, baseHeld)...)
	}
	fmt.Printf("\n%d rounds in %s.\n", len(rounds), time.Since(start).Round(time.Second))
	if len(failures) == 0 {
		fmt.Println("PASS: every byte intact, every reload taken, descriptors and goroutines back to the first round's, memory flat, no error logged.")
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
// the reloads counted and failed are checked from the metrics.
func reloadLoop(in *instance, rl *reloader, stop <-chan struct{}) error {
	t := time.NewTicker(soakReloadEvery)
	defer t.Stop()
	for n := 0; n < 100_000; n++ {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		if err := rl.reload(in, n); err != nil {
			return err
		}
	}
	return nil
}

// reloader holds each process's config as the relay started with it and a
// spare port per process for the listener the reloads add and remove.
type reloader struct {
	configs []string
	spare   []int
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
	for i, p := range in.procs {
		text := rl.configs[i]
		if n >= 0 {
			var err error
			if text, err = reloadVariant(text, n, rl.spare[i]); err != nil {
				return fmt.Errorf("%s: %w", in.configs[i], err)
			}
		}
		if err := os.WriteFile(in.configs[i], []byte(text), 0o600); err != nil {
			return err
		}
		if err := syscall.Kill(p.pid(), syscall.SIGHUP); err != nil {
			return fmt.Errorf("reload %d of %s: %w", n+1, p.name, err)
		}
	}
	return nil
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
	for i, p := range in.procs {
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
func quiet(in *instance, start time.Time) (soakSample, error) {
	until := time.Now().Add(soakSettle)
	var prev soakSample
	for {
		open, err := openGauges(in)
		if err != nil {
			return prev, err
		}
		smp, err := sampleRelay(in, start)
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
	for i, p := range in.procs {
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

// settle waits, without traffic, until the relay holds no more descriptors
// and goroutines than before the first round, or soakSettle passes.
func settle(in *instance, start time.Time, idle soakSample) (bool, soakSample, error) {
	until := time.Now().Add(soakSettle)
	for {
		smp, err := sampleRelay(in, start)
		if err != nil {
			return false, smp, err
		}
		pipes := min(smp.pipes-idle.pipes, soakPoolPipes*int64(len(in.procs)))
		ok := smp.fds-pipes <= idle.fds
		for i := range in.procs {
			ok = ok && smp.perProc[i] <= idle.perProc[i]+soakSlack+cachedWorkers(in.configs[i])
		}
		if ok {
			return true, smp, nil
		}
		if time.Now().After(until) {
			return false, smp, nil
		}
		time.Sleep(250 * time.Millisecond) // polling what the kernel counts: no event to await
	}
}

// settleCheck waits for the relay to let go of what the traffic made it
// hold and says what it kept: descriptors (beyond the pipe pool) by kind,
// and goroutines (beyond the idle connection workers each listener keeps)
// by where they wait, from a SIGQUIT dump, which ends the processes.
func settleCheck(in *instance, start time.Time, idle soakSample, idleHeld []string) []string {
	var failures []string
	settled, last, err := settle(in, start, idle)
	if err != nil {
		return []string{err.Error()}
	}
	printSoakSample("settled", last)
	if !settled {
		failures = append(failures, fmt.Sprintf("after %s without traffic the relay still holds %d descriptors and %d goroutines (idle: %d and %d)",
			soakSettle, last.fds, last.goroutines, idle.fds, idle.goroutines))
		for i, p := range in.procs {
			if now := holdings(p.pid()); now != idleHeld[i] {
				failures = append(failures, fmt.Sprintf("%s held at idle: %s", p.name, idleHeld[i]),
					fmt.Sprintf("%s holds now: %s", p.name, now))
			}
		}
	}
	for i, p := range in.procs {
		counts, summary := goroutineDump(p)
		if counts == nil {
			failures = append(failures, fmt.Sprintf("%s: %s", p.name, summary))
			continue
		}
		// The count is the metric's (runtime.NumGoroutine, without the
		// runtime's own goroutines, which the dump shows too).
		total, workers := last.perProc[i], int64(counts[idleWorker])
		fmt.Printf("%s at the end: %d goroutines (%d at idle), %d of them idle connection workers (at most %d)\n",
			p.name, total, idle.perProc[i], workers, cachedWorkers(in.configs[i]))
		if workers > cachedWorkers(in.configs[i]) || total-workers > idle.perProc[i]+soakSlack {
			failures = append(failures, fmt.Sprintf("%s runs %d goroutines, %d at idle; where they wait: %s",
				p.name, total, idle.perProc[i], summary))
		}
	}
	return failures
}

// idleWorker is how summarizeStacks names a connection worker waiting for
// the next connection (forward's connWorker, kept up to maxIdleWorkers per
// listener for their grown stacks).
const idleWorker = "forward.(*Listener).connWorker [select]"

// cachedWorkers is how many idle connection workers the relay may keep
// with the config at path: forward's maxIdleWorkers (16) per listener.
func cachedWorkers(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return 16 * int64(strings.Count(string(b), "\n  - name: "))
}

// rssGrowth compares the median RSS of the last third of the rounds with
// the first third's; "" when it stayed within soakRSSGrowth or there are
// too few rounds to tell.
func rssGrowth(rounds []soakSample) string {
	if len(rounds) < 6 {
		return ""
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
	first, last := median(rounds[:third]), median(rounds[len(rounds)-third:])
	if float64(last) <= soakRSSGrowth*float64(first) {
		return ""
	}
	return fmt.Sprintf("resident memory grew from %d KiB (median of the first %d rounds) to %d KiB (the last %d)",
		first, third, last, third)
}

// sampleRelay reads what the instance's processes hold.
func sampleRelay(in *instance, start time.Time) (soakSample, error) {
	s := soakSample{at: time.Since(start)}
	m, err := in.memory()
	if err != nil {
		return s, err
	}
	s.fds, s.rssKiB = m.fds, m.rssKiB
	for i, p := range in.procs {
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
	return s, nil
}

// scrape reads the admin endpoint's metrics into name{labels} -> value.
func scrape(addr string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format's samples.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// errorLines returns the relay's JSON log lines at level error (and any
// Go panic) in the log at path.
func errorLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{err.Error()}
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"fatal"`) ||
			strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		lines = append(lines, err.Error())
	}
	return lines
}

func printSoakHeader() {
	fmt.Printf("\n| round | at | descriptors | of them pipes | threads | goroutines | RSS, MiB | reloads |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
}

func printSoakSample(label string, s soakSample) {
	fmt.Printf("| %s | %s | %d | %d | %d | %d | %.1f | %d |\n", label, s.at.Round(time.Second), s.fds, s.pipes, s.threads,
		s.goroutines, float64(s.rssKiB)/1024, s.reloads)
}

// pipeEnds counts the process's descriptors that are pipes.
func pipeEnds(pid int) int64 {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, ent := range ents {
		if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name())); err == nil && strings.HasPrefix(t, "pipe:") {
			n++
		}
	}
	return n
}

// holdings describes what a process's descriptors are, for a soak that
// did not settle: kinds counted, and the sockets with their addresses and
// TCP state as /proc/net shows them.
func holdings(pid int) string {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return err.Error()
	}
	sockets := procNetSockets()
	kinds := map[string]int{}
	for _, ent := range ents {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, ent.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(target, "socket:[") {
			inode := strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
			if desc, ok := sockets[inode]; ok {
				target = desc
			}
		} else if i := strings.IndexByte(target, '['); i > 0 && !strings.HasPrefix(target, "/") {
			target = target[:i]
		}
		kinds[target]++
	}
	var out []string
	for k, n := range kinds {
		out = append(out, fmt.Sprintf("%d× %s", n, k))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// tcpStates names the st column of /proc/net/tcp.
var tcpStates = map[string]string{"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}

// procNetSockets maps socket inodes to "proto local->remote state" for
// the IPv4 sockets of /proc/net (the bench's traffic is all on 127.0.0.1).
func procNetSockets() map[string]string {
	out := map[string]string{}
	for _, proto := range []string{"tcp", "udp"} {
		b, err := os.ReadFile("/proc/net/" + proto)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			st := f[3]
			if proto == "tcp" {
				st = tcpStates[st]
			} else {
				st = ""
			}
			out[f[9]] = strings.TrimSpace(fmt.Sprintf("%s %s->%s %s", proto, hexAddr(f[1]), hexAddr(f[2]), st))
		}
	}
	return out
}

// hexAddr turns /proc/net's "0100007F:1F90" into "127.0.0.1:8080".
func hexAddr(s string) string {
	host, port, ok := strings.Cut(s, ":")
	if !ok || len(host) != 8 {
		return s
	}
	a, err1 := strconv.ParseUint(host, 16, 32)
	p, err2 := strconv.ParseUint(port, 16, 16)
	if err1 != nil || err2 != nil {
		return s
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", byte(a), byte(a>>8), byte(a>>16), byte(a>>24), p)
}

// goroutineDump ends the process with SIGQUIT, which makes the Go runtime
// write every goroutine's stack to its log, and sums those up: how many
// goroutines wait in each relay function (the innermost frame of the
// module), most first.
func goroutineDump(p *process) (map[string]int, string) {
	if err := syscall.Kill(p.pid(), syscall.SIGQUIT); err != nil {
		return nil, err.Error()
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		return nil, "no goroutine dump: the process did not exit on SIGQUIT"
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return nil, err.Error()
	}
	return summarizeStacks(string(b), "github.com/edgerelay/relay/")
}

// summarizeStacks counts the goroutines of a Go traceback by their
// innermost frame in module (the first line of the stack otherwise) and
// state.
func summarizeStacks(dump, module string) (map[string]int, string) {
	counts := map[string]int{}
	for _, block := range strings.Split(dump, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[0], "goroutine ") {
			continue
		}
		state := ""
		if i, j := strings.IndexByte(lines[0], '['), strings.IndexByte(lines[0], ']'); i >= 0 && j > i {
			state = lines[0][i+1 : j]
			if k := strings.IndexByte(state, ','); k >= 0 { // "IO wait, 2 minutes"
				state = state[:k]
			}
		}
		where := lines[1]
		for _, l := range lines[1:] {
			if strings.HasPrefix(l, module) {
				where = l
				break
			}
		}
		if i := strings.LastIndexByte(where, '('); i > 0 {
			where = where[:i]
		}
		counts[strings.TrimPrefix(where, module)+" ["+state+"]"]++
	}
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
	return counts, strings.Join(out, "; ")
}
