package admin

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// hostLogEvery is the least time between two warnings about refused Host
// headers: a rebinding page retries in a loop, and one line a minute (with
// the count of the others) says as much as a line a request.
const hostLogEvery = time.Minute

// hostCheck refuses requests whose Host header names something the endpoint
// is not known by, with 421 Misdirected Request. That is what stops DNS
// rebinding: a page from evil.example that has its name re-pointed at the
// relay's address is same-origin with whatever answers there, but its
// requests still say "Host: evil.example". A Host that is an IP literal,
// localhost, the machine's hostname or a listed name cannot be an
// attacker's origin: the attacker controls none of those names' DNS, and
// an IP literal origin is the very address the browser connects to.
type hostCheck struct {
	hosts    func() []string        // admin.hosts, lower case; nil: none
	hostname func() (string, error) // the machine's name
	refused  prometheus.Counter
	log      zerolog.Logger
	now      func() time.Time

	mu         sync.Mutex // guards the following
	logged     time.Time  // when the last warning was written
	suppressed int        // refusals not logged since then
}

func newHostCheck(cfg Config, log zerolog.Logger) *hostCheck {
	c := &hostCheck{
		hosts:    cfg.Hosts,
		hostname: cfg.Hostname,
		log:      log,
		now:      time.Now,
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_admin_misdirected_requests_total",
			Help: "Admin endpoint requests refused with 421 because their Host header named none of the endpoint's names (DNS rebinding, or a name missing from admin.hosts).",
		}),
	}
	if c.hostname == nil {
		c.hostname = os.Hostname
	}
	return c
}

// wrap answers 421 to a request whose Host the endpoint does not answer
// to, before h sees it.
func (c *hostCheck) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.known(r.Host) {
			h.ServeHTTP(w, r)
			return
		}
		c.refused.Inc()
		c.warn(r)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusMisdirectedRequest)
		// The body may reach the page that made the request: it names the
		// setting, not the machine's names.
		fmt.Fprintf(w, "misdirected request: the relay's admin endpoint does not answer to the name %q; "+
			"use its IP address, localhost or this machine's hostname, or add the name to admin.hosts in the relay's config\n",
			hostName(r.Host))
	})
}

// known reports whether the Host header value h (a name or an address,
// with or without port) names this endpoint.
func (c *hostCheck) known(h string) bool {
	name := hostName(h)
	switch {
	case name == "":
		// HTTP/1.0 without Host (HTTP/1.1 without one never reaches a
		// handler): no browser sends that, so no page can rebind it.
		return true
	case name == "localhost":
		return true
	case isIPLiteral(name):
		return true
	}
	if own, err := c.hostname(); err == nil && own != "" {
		own = hostName(own)
		short, _, _ := strings.Cut(own, ".")
		if name == own || name == short {
			return true
		}
	}
	if c.hosts != nil {
		for _, n := range c.hosts() {
			if name == hostName(n) {
				return true
			}
		}
	}
	return false
}

// warn logs a refused request: the first at once, then at most one line
// per hostLogEvery, which counts the refusals left out since the last one.
func (c *hostCheck) warn(r *http.Request) {
	now := c.now()
	c.mu.Lock()
	if !c.logged.IsZero() && now.Sub(c.logged) < hostLogEvery {
		c.suppressed++
		c.mu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.logged, c.suppressed = now, 0
	c.mu.Unlock()
	c.log.Warn().Str("host", r.Host).Str("client", r.RemoteAddr).Int("suppressed", suppressed).
		Msg("admin endpoint refused a request for a name it does not answer to (421): " +
			"a web page trying DNS rebinding, or a name of this box to add to admin.hosts")
}

// hostName is the host part of a Host header value or of a hostname, in
// lower case, without brackets, port or the root's trailing dot.
func hostName(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// isIPLiteral reports whether name is an IPv4 or IPv6 address (an IPv6 one
// may carry a zone).
func isIPLiteral(name string) bool {
	_, err := netip.ParseAddr(name)
	return err == nil
}
