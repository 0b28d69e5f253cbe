package admin

import (
	"embed"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"
)

// page is the status page: HTML, CSS and plain JavaScript that reads
// /status.json every 2 s. It asks nothing of any other host, so it works
// on a laptop with no internet at the edge box.
//
//go:embed page
var page embed.FS

// securityHeaders keep the page to its own files: nothing else may load or
// frame it, and it may fetch nothing but this endpoint.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
		"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// servePage returns a handler for one embedded file of the page.
func servePage(name, contentType string) http.HandlerFunc {
	body, err := page.ReadFile("page/" + name)
	if err != nil {
		panic("admin: page file missing from the binary: " + name) // a build error, not a runtime one
	}
	return func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}
}

// statusReader builds the Status that /status.json and the page show.
type statusReader struct {
	gather func() []Snapshot
	relay  func() Relay
	ready  func() bool
	rates  rates
	now    func() time.Time
}

func (sr *statusReader) read() Status {
	now := sr.now()
	st := Status{Time: now, Ready: sr.ready == nil || sr.ready()}
	if sr.relay != nil {
		st.Relay = sr.relay()
	}
	if sr.gather != nil {
		for _, m := range mergeByName(sr.gather()) {
			st.Listeners = append(st.Listeners, m.Snapshot)
		}
	}
	if st.Listeners == nil {
		st.Listeners = []Snapshot{} // [] rather than null for scripts
	}
	emptyLists(&st)
	fillTLSAttention(now, st.Listeners)
	sr.rates.fill(now, st.Listeners)
	st.Process = process(now, st.Relay.Started, st.Listeners)
	return st
}

// emptyLists gives the lists of st that are empty the value [] rather than
// null in the JSON, so a script can count or loop over them without a
// check (len(None) fails in Python). Sections are copied before they are
// changed: they may be the caller's.
func emptyLists(st *Status) {
	if a := st.Relay.ACL; a != nil && (a.Recent == nil || a.Decisions == nil) {
		acl := *a
		if acl.Recent == nil {
			acl.Recent = []Rejection{}
		}
		if acl.Decisions == nil {
			acl.Decisions = []ACLDecisions{}
		}
		st.Relay.ACL = &acl
	}
	for i := range st.Listeners {
		s := &st.Listeners[i]
		if s.Upstreams == nil {
			s.Upstreams = []Upstream{}
		}
		if s.TLS != nil {
			s.TLS = &TLS{Client: failingList(s.TLS.Client), Upstream: failingList(s.TLS.Upstream)}
		}
		if s.Raw != nil && s.Raw.Printing == nil {
			raw := *s.Raw
			raw.Printing = []Holder{}
			s.Raw = &raw
		}
	}
}

// failingList is h with Failing [] rather than null, copied.
func failingList(h *Handshakes) *Handshakes {
	if h == nil || h.Failing != nil {
		return h
	}
	c := *h
	c.Failing = []HandshakeFailure{}
	return &c
}

func (sr *statusReader) serveJSON(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	_ = enc.Encode(sr.read())
}

// guard answers 403 to a client allow refuses, before any handler runs.
func guard(allow func(netip.AddrPort) bool, h http.Handler) http.Handler {
	if allow == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !allow(client) {
			http.Error(w, "forbidden by the relay's ACL (listener name admin)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
