package main

import (
	"errors"
	"os"
	"sync"
	"time"
)

// route is one forwarding rule a scenario needs: listen somewhere on
// loopback and carry the traffic to upstream.
type route struct {
	name     string // listener name, [a-z0-9-]+
	mode     string // the relay's mode: tcp, ftp, udp or raw
	upstream string // the backend, host:port
}

// proto is the transport a forwarder must listen on for this route.
func (r route) proto() string {
	if r.mode == "udp" {
		return "udp"
	}
	return "tcp"
}

// forwarder is one way of getting the traffic to the backends: the relay, a
// peer program, or no forwarder at all (direct).
type forwarder interface {
	name() string
	// unsupported says why the forwarder cannot carry a route of this mode,
	// or "" when it can.
	unsupported(mode string) string
	// start listens for every route on fresh loopback ports.
	start(e *env, routes []route) (*instance, error)
}

// instance is a running forwarder.
type instance struct {
	name    string
	addrs   map[string]string // route name -> address the clients connect to
	ftpData [2]int            // the relay's FTP data ports, first and last; zero for the others
	configs []string          // the relay's config file per process, as procs
	admins  []string          // the relay's admin endpoint per process when asked for ("": none)

	mu    sync.Mutex // guards the following: the soak's upgrades replace a process while scenarios read them
	procs []*process // none for direct
}

// processes returns the instance's processes as they are now.
func (in *instance) processes() []*process {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*process(nil), in.procs...)
}

// replace puts p in the place of the i-th process (the new process of its
// binary upgrade).
func (in *instance) replace(i int, p *process) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.procs[i] = p
}

// addr returns where clients reach the route.
func (in *instance) addr(route string) string { return in.addrs[route] }

// hasProcess reports whether there is a forwarder process to measure.
func (in *instance) hasProcess() bool { return len(in.processes()) > 0 }

// cpu is the CPU time consumed so far by every process of the instance.
func (in *instance) cpu() (time.Duration, error) { return sumGroups(in, groupCPU) }

// sleeps is how often the instance's threads have gone to sleep so far.
func (in *instance) sleeps() (int64, error) { return sumGroups(in, groupSleeps) }

// sumGroups adds up a per-process-group count over the instance's processes.
func sumGroups[T time.Duration | int64](in *instance, count func(pgid int) (T, error)) (T, error) {
	var total T
	for _, p := range in.processes() {
		n, err := count(p.pgid())
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// memory sums resident memory and descriptors over the instance's processes.
func (in *instance) memory() (memory, error) {
	var total memory
	for _, p := range in.processes() {
		m, err := groupMemory(p.pgid())
		if err != nil {
			return memory{}, err
		}
		total.rssKiB += m.rssKiB
		total.fds += m.fds
	}
	return total, nil
}

// alive returns an error when a process of the instance has exited.
func (in *instance) alive() error {
	var errs []error
	for _, p := range in.processes() {
		errs = append(errs, p.alive())
	}
	return errors.Join(errs...)
}

// stop ends every process of the instance.
func (in *instance) stop() {
	for _, p := range in.processes() {
		_ = p.stop(3 * time.Second)
	}
	in.mu.Lock()
	in.procs = nil
	in.mu.Unlock()
}

// direct is the machine's own limit: clients talk to the backends.
type direct struct{}

func (direct) name() string              { return "direct" }
func (direct) unsupported(string) string { return "" }

func (direct) start(_ *env, routes []route) (*instance, error) {
	in := &instance{name: "direct", addrs: map[string]string{}}
	for _, r := range routes {
		in.addrs[r.name] = r.upstream
	}
	return in, nil
}

// listenPorts allocates one loopback port per route and returns the
// instance's address map and the ports to wait for.
func listenPorts(e *env, name string, routes []route) (*instance, []portSpec, error) {
	in := &instance{name: name, addrs: map[string]string{}}
	var specs []portSpec
	for _, r := range routes {
		p, err := e.ports.one()
		if err != nil {
			return nil, nil, err
		}
		in.addrs[r.name] = loopback(p)
		specs = append(specs, portSpec{proto: r.proto(), port: p})
	}
	return in, specs, nil
}

// launch writes a forwarder's config file (when cfgPath is set), starts the
// forwarder with args, and waits until every port in specs listens. The
// instance owns the process; on failure it is stopped.
func launch(e *env, in *instance, specs []portSpec, cfgPath, cfgText, bin string, args ...string) (*instance, error) {
	return launchParts(e, in, part{specs: specs, cfgPath: cfgPath, cfgText: cfgText, argv: append([]string{bin}, args...)})
}

// part is one process of a forwarder: its config file, its command line
// and the ports it listens on. A tunnel's box office and venue are two, as
// on two machines.
type part struct {
	suffix           string // appended to the instance's name for this process's log
	specs            []portSpec
	cfgPath, cfgText string // no file when cfgPath is ""
	argv             []string
}

// launchParts is launch for a forwarder of several processes; the
// instance owns them all (its CPU and sleep rows add them up).
func launchParts(e *env, in *instance, parts ...part) (*instance, error) {
	in.procs = nil
	for _, pt := range parts {
		if pt.cfgPath != "" {
			if err := os.WriteFile(pt.cfgPath, []byte(pt.cfgText), 0o600); err != nil {
				in.stop()
				return nil, err
			}
		}
		p, err := e.startProcess(in.name+pt.suffix, pt.argv...)
		if err != nil {
			in.stop()
			return nil, err
		}
		in.procs = append(in.procs, p)
		if err := p.waitListening(pt.specs, 10*time.Second); err != nil {
			in.stop()
			return nil, err
		}
	}
	return in, nil
}
