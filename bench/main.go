// Command bench is relay's load-test suite: it builds the relay from this
// tree, starts loopback backends (TCP sink and echo, an FTP server, UDP sink
// and echo, a simulated ticket printer), pushes every mode through the relay,
// through no forwarder at all (direct), and through the peers installed here
// (HAProxy, nginx stream, socat, rinetd), checks that every byte and
// datagram arrived intact, and prints one table of medians and ratios.
//
//	go run ./bench                  every scenario, 3 runs (a few minutes)
//	go run ./bench -quick           every scenario, 1 short run (about a minute)
//	go run ./bench -scenario udp    one scenario
//	go run ./bench -json out.json   also write every run's figures
//	go run ./bench -plots DIR       also write an SVG chart per scenario
//	go run ./bench -baseline BIN    also measure an earlier relay binary, A/B in the same runs
//	go run ./bench -soak 30m        one relay, every scenario round after round with reloads: a leak check
//	go run ./bench -soak 10m -soak-upgrade-every 10   and a binary upgrade in place after every 10 reloads
//
// All traffic stays on 127.0.0.1. The peers are started and stopped by the
// bench, each in a process group of its own. The exit status is 1 when the
// relay (or the direct path) lost or corrupted data, 2 on bad usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == idleBackendArg {
		os.Exit(runIdleBackend())
	}
	os.Exit(run())
}

// options are the command-line flags.
type options struct {
	quick    bool
	scenario string
	runs     int
	jsonPath string
	plotDir  string
	relayBin string
	baseBin  string
	peers    string
	soak     time.Duration
	// soakUpgradeEvery is how many reloads the soak makes between binary
	// upgrades; 0, the default, upgrades nothing.
	soakUpgradeEvery int
}

func parseFlags() (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "one short run of every scenario (about a minute)")
	fs.StringVar(&o.scenario, "scenario", "", "run only these scenarios, a comma `list` of: "+strings.Join(scenarioNames(), ", "))
	fs.IntVar(&o.runs, "runs", 0, "runs per forwarder (default 3, or 1 with -quick)")
	fs.StringVar(&o.jsonPath, "json", "", "also write every run's figures to this `file`")
	fs.StringVar(&o.plotDir, "plots", "", "also write an SVG chart per scenario into this `folder`")
	fs.StringVar(&o.relayBin, "relay", "", "use this relay `binary` instead of building ./cmd/relay")
	fs.StringVar(&o.baseBin, "baseline", "", "also measure this relay `binary` (column \"baseline\"), taking turns with the relay in every run")
	fs.StringVar(&o.peers, "peers", "all", "peers to compare: all, none, or a comma `list` of "+strings.Join(peerNames(), ","))
	fs.DurationVar(&o.soak, "soak", 0, "instead of the table: run every scenario round after round through one relay for this `duration`, reloading it every few seconds, and check that nothing leaks (see soak.go)")
	fs.IntVar(&o.soakUpgradeEvery, "soak-upgrade-every", 0, "with -soak: after every `N` reloads (3 s apart), upgrade the relay's binary in place instead (relay upgrade), under the traffic; 0 upgrades nothing (see soakupgrade.go)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return o, err
	}
	if o.soakUpgradeEvery < 0 || o.soakUpgradeEvery > 0 && o.soak == 0 {
		err := fmt.Errorf("-soak-upgrade-every %d: give a count of reloads, 1 or more, with -soak", o.soakUpgradeEvery)
		fmt.Fprintln(fs.Output(), err)
		return o, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(fs.Output(), err)
		return o, err
	}
	return o, nil
}

func run() int {
	o, err := parseFlags()
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag package has said why
	}
	scenarios, err := pickScenarios(o.scenario)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	sc := defaultScale()
	if o.quick || o.soak > 0 {
		sc = quickScale()
	}
	if o.runs > 0 {
		sc.runs = o.runs
	}
	dir, err := os.MkdirTemp("", "relay-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	e := &env{dir: dir, ports: newPortAlloc(), scale: sc, files: int(raiseFileLimit())}
	var code int
	if o.soak > 0 {
		code = soak(e, o, o.soak, scenarios)
	} else {
		code = bench(e, o, scenarios)
	}
	e.stopAll()
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "bench: configs and forwarder logs kept in %s\n", dir)
	}
	return code
}

// bench runs the scenarios and prints the table; it returns the exit status.
func bench(e *env, o options, scenarios []scenario) int {
	stopOnSignal(e)
	started := time.Now()
	loadBefore := loadAverage()
	relay, version, err := relayUnderTest(e, o.relayBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	fwds := []forwarder{direct{}, relay}
	versions := map[string]string{"relay": version}
	var columns []string
	if o.baseBin != "" {
		base := relayFwd{bin: o.baseBin, label: baselineColumn}
		fwds = append(fwds, base)
		columns = append(columns, base.name())
		versions[base.name()] = firstLine(o.baseBin, "version") + ", " + o.baseBin
	}
	peers, peerColumns := peerForwarders(o.peers, versions)
	fwds = append(fwds, peers...)
	columns = append(columns, peerColumns...)
	prog := newProgress(os.Stderr, e.scale.runs, len(scenarios))
	var results []*scenarioResult
	for i, s := range scenarios {
		prog.scenario(i + 1)
		results = append(results, runScenario(e, s, fwds, prog))
	}
	prog.done()
	m := describeMachine()
	fmt.Printf("relay bench, %s: %d cores %s, Linux %s, %s, %s\n", started.Format("2006-01-02 15:04"),
		m.Cores, m.CPU, m.Kernel, m.OS, m.Go)
	fmt.Printf("command: %s; took %s; load average %s before, %s after\n", commandLine(),
		time.Since(started).Round(time.Second), loadBefore, loadAverage())
	for _, name := range append([]string{"relay", baselineColumn}, peerNames()...) {
		if v, ok := versions[name]; ok {
			fmt.Printf("%s: %s\n", name, v)
		}
	}
	fmt.Println()
	writeTable(os.Stdout, results, columns, e.scale.runs)
	if o.jsonPath != "" {
		rep := jsonReport{Started: started, Command: commandLine(), Machine: m, Runs: e.scale.runs,
			Window: e.scale.window.String(), Versions: versions}
		if err := writeJSON(o.jsonPath, rep, results); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if o.plotDir != "" {
		if err := writePlots(o.plotDir, results); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	return exitStatus(results)
}

// baselineColumn is the column of the relay binary given with -baseline.
const baselineColumn = "baseline"

// relayUnderTest builds the relay (or takes the binary given) and says
// which version it is.
func relayUnderTest(e *env, bin string) (forwarder, string, error) {
	rev := ""
	if bin == "" {
		fmt.Fprintln(os.Stderr, "bench: building ./cmd/relay")
		var err error
		if bin, rev, err = buildRelay(e.dir); err != nil {
			return nil, "", err
		}
	}
	version := firstLine(bin, "version")
	if rev != "" {
		version += ", built from " + rev
	}
	return relayFwd{bin: bin}, version, nil
}

// peerForwarders returns the peers found, in column order, and their
// column names; versions gets each one's version or why it is missing.
func peerForwarders(filter string, versions map[string]string) ([]forwarder, []string) {
	found := findPeers(peerFilter(filter))
	var fwds []forwarder
	var columns []string
	for _, name := range peerNames() {
		p, ok := found[name]
		switch {
		case !ok:
		case p.fwd == nil:
			versions[name] = p.missing
		default:
			versions[name] = p.version
			fwds = append(fwds, p.fwd)
			columns = append(columns, name)
		}
	}
	return fwds, columns
}

// exitStatus is 1 when the relay or the direct path failed a check. A peer
// that fails is shown in the table but does not fail the bench.
func exitStatus(results []*scenarioResult) int {
	for _, res := range results {
		for _, f := range res.Failures {
			if f.Forwarder == "relay" || f.Forwarder == "direct" || f.Forwarder == "bench" {
				return 1
			}
		}
	}
	return 0
}

// stopOnSignal stops every forwarder when the bench is interrupted: they
// run in process groups of their own and would outlive it.
func stopOnSignal(e *env) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "\nbench: %v, stopping the forwarders\n", sig)
		e.stopAll()
		os.RemoveAll(e.dir)
		os.Exit(130)
	}()
}

func commandLine() string {
	args := append([]string{"go run ./bench"}, os.Args[1:]...)
	return strings.Join(args, " ")
}

func scenarioNames() []string {
	var names []string
	for _, s := range allScenarios() {
		names = append(names, s.name())
	}
	return names
}

// pickScenarios returns the scenarios named in a comma list, in table
// order; every one for an empty list.
func pickScenarios(list string) ([]scenario, error) {
	if list == "" {
		return allScenarios(), nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		want[strings.TrimSpace(name)] = true
	}
	var picked []scenario
	for _, s := range allScenarios() {
		if want[s.name()] {
			picked = append(picked, s)
			delete(want, s.name())
		}
	}
	for name := range want {
		return nil, fmt.Errorf("no scenario %q (have %s)", name, strings.Join(scenarioNames(), ", "))
	}
	return picked, nil
}

// peerFilter turns -peers into the set findPeers looks for; empty = all.
func peerFilter(s string) map[string]bool {
	want := map[string]bool{}
	switch s {
	case "all", "":
		return want
	case "none":
		want["none"] = true
		return want
	}
	for _, p := range strings.Split(s, ",") {
		want[strings.TrimSpace(p)] = true
	}
	return want
}
