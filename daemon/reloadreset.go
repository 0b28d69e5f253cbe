package daemon

import (
	"reflect"
	"slices"
	"strings"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/upstream"
)

// resetUpstreams ends the outages that a reload in force may have ended by
// changing how a listener dials its upstreams, so the next connection
// tries them at once instead of being closed until their next re-try (up
// to 30 s): the admin who fixed a box office's CA file and tests at once
// must see the fix work. filesChanged names the listeners whose
// upstream_tls files now hold other material (tlsSet.clientsChanged).
// What the reload left alone keeps its outages (upstream.Config.Replaces;
// a kept listener keeps its Set): a dead backend stays dead. One info line
// per listener with an upstream brought back says which and why.
func (d *Daemon) resetUpstreams(p *plan, filesChanged map[string]bool) {
	type pair struct {
		was, now config.Listener
		ups      *upstream.Set
	}
	var pairs []pair
	d.mu.Lock()
	for name := range p.keep {
		if in := d.running[name]; in != nil {
			pairs = append(pairs, pair{in.spec, in.spec, in.ups})
		}
	}
	for _, in := range p.opened {
		for _, old := range p.retired {
			if old.spec.Name == in.spec.Name {
				pairs = append(pairs, pair{old.spec, in.spec, in.ups})
			}
		}
	}
	d.mu.Unlock()
	for _, pr := range pairs {
		which, why := dialChange(pr.was, pr.now, filesChanged[pr.now.Name])
		if which == 0 {
			continue
		}
		if back := pr.ups.Reset(which); len(back) > 0 {
			d.log.Info().Str("listener", pr.now.Name).Strs("upstreams", back).Str("reason", why).
				Msg("upstream state reset")
		}
	}
}

// dialChange says which outages of a listener's upstreams the change from
// was to now may have ended (0: none), and why, in the config's words.
// The dial itself (the list, connect_timeout, the probe's timeout and
// payload) can end any; what goes over the connection once it is made
// (upstream_tls, its files, proxy_protocol) only those whose connect
// worked (upstream.ResetReached).
func dialChange(was, now config.Listener, filesChanged bool) (upstream.Reset, string) {
	var all, reached []string
	if !slices.EqualFunc(was.Upstreams, now.Upstreams, slices.Equal) {
		all = append(all, "upstream list changed")
	}
	if was.ConnectTimeout != now.ConnectTimeout {
		all = append(all, "connect_timeout changed")
	}
	wh, nh := was.Health, now.Health
	wh.Interval, nh.Interval = 0, 0 // how often says nothing of whether a probe answers
	if !reflect.DeepEqual(wh, nh) {
		all = append(all, "health check changed")
	}
	// The material read from the files holds the server name too: a
	// changed section is the reason then, the files only when it is not.
	if !reflect.DeepEqual(was.UpstreamTLS, now.UpstreamTLS) {
		reached = append(reached, "upstream_tls changed")
	} else if filesChanged {
		reached = append(reached, "upstream_tls files changed")
	}
	if was.ProxyProtocol != now.ProxyProtocol {
		reached = append(reached, "proxy_protocol changed")
	}
	switch {
	case len(all) > 0:
		return upstream.ResetAll, strings.Join(append(all, reached...), ", ")
	case len(reached) > 0:
		return upstream.ResetReached, strings.Join(reached, ", ")
	}
	return 0, ""
}
