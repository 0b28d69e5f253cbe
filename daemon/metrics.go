package daemon

import "github.com/edgerelay/relay/admin"

// Snapshots reads the counters of every listener, running or draining, for
// the admin endpoint, plus the final counters of instances a reload replaced.
// Snapshots sharing a name (a draining listener and its replacement, carried
// counts) are added up by admin, so a name's counters never go down.
func (d *Daemon) Snapshots() []admin.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]admin.Snapshot, 0, len(d.running)+len(d.draining)+len(d.carried))
	for _, spec := range d.cfg.Listeners { // config order, for the page
		if in, ok := d.running[spec.Name]; ok {
			out = append(out, in.snapshot())
		}
	}
	for in := range d.draining {
		s := in.snapshot()
		s.State = admin.StateDraining
		out = append(out, s)
	}
	for name, s := range d.carried {
		if _, named := d.running[name]; named {
			out = append(out, s)
		}
	}
	return out
}

// snapshot reads the instance's counters and facts.
func (in *instance) snapshot() admin.Snapshot {
	s := in.snap()
	if in.down.Load() {
		s.State = admin.StateDown
	}
	return s
}
