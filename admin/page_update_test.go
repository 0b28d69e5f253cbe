package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgerelay/relay/internal/headless"
)

// probeResult is what testdata/page_probe.js saw, field for field.
type probeResult struct {
	Step, Error                   string
	Selected, SelectedClient      string
	Scrolled, ScrollAfter         float64
	AcceptedBefore, AcceptedAfter string
	FoldOpen                      bool
	AfterRefresh, AfterReload     struct {
		Text      string
		Connected bool
	}
	Cards, Upstreams []probeKept
}

// probeKept is a card (Name: its listener) or an upstream row (Name: its
// address) after the reload; Kept: the same element as before it.
type probeKept struct {
	Name string
	Kept bool
}

// reloadingRelay is a relay whose figures move on every read and whose
// listeners change at the reload the probe asks for (POST /reload).
type reloadingRelay struct {
	reads    atomic.Uint64
	reloaded atomic.Bool
}

func (rr *reloadingRelay) gather() []Snapshot {
	n := rr.reads.Add(1)
	rtb := Snapshot{Listener: "rtb", Mode: "udp", State: StateServing, Listen: "0.0.0.0:8100-8119", UDP: &UDP{}, HealthChecks: true}
	for p := 8100; p < 8120; p++ {
		rtb.Upstreams = append(rtb.Upstreams, Upstream{Address: "192.0.2.30:" + strconv.Itoa(p), Health: HealthUp})
	}
	web := Snapshot{Listener: "cms-http", Mode: "tcp", State: StateServing, Listen: "0.0.0.0:80",
		Upstreams: []Upstream{{Address: "192.0.2.10:80", Health: HealthUp}},
		Conns:     &Conns{Accepted: 40 + n, Active: 2}, BytesToClient: 1000 * n}
	printer := Snapshot{Listener: "ticket-printer", Mode: "raw", State: StateServing, Listen: "0.0.0.0:10001",
		Upstreams: []Upstream{{Address: "192.0.2.20:9100"}}, Conns: &Conns{}, Raw: &Raw{}}
	if !rr.reloaded.Load() {
		return []Snapshot{web, rtb, printer}
	}
	// The reload adds a backup upstream and an FTP listener between two
	// kept ones, and drops the printer.
	web.Upstreams = append(web.Upstreams, Upstream{Address: "192.0.2.11:80", Health: HealthUp})
	ftp := Snapshot{Listener: "cms-ftp", Mode: "ftp", State: StateServing, Listen: "0.0.0.0:21",
		Upstreams: []Upstream{{Address: "192.0.2.10:21"}}, Conns: &Conns{}, FTP: &FTP{}}
	return []Snapshot{web, ftp, rtb}
}

// TestPageUpdatesInPlace: a refresh changes the page in place. An address
// the admin selected stays selected (and in the document), an opened fold
// stays open and the page stays scrolled while the figures around them
// change; after a reload the new listener's card and upstream appear in
// config order, the dropped listener's card goes, and every other card
// and upstream row is the same DOM element as before. The page's script
// runs beside testdata/page_probe.js, which does the admin's part.
func TestPageUpdatesInPlace(t *testing.T) {
	browser := headless.New(t)
	rr := &reloadingRelay{}
	now := time.Now()
	s, err := New(Config{Gather: rr.gather, Relay: func() Relay {
		return Relay{Version: "relay v1.2.3", Started: now.Add(-time.Hour), ACL: &ACL{File: "relay_hba.conf", Rules: 1,
			Recent: []Rejection{{Time: now.Add(-time.Minute), Listener: "cms-http", Proto: "tcp",
				Client: "198.51.100.7:40000", Rule: "relay_hba.conf:1 host all all reject"}}}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(probing(t, s.Handler(), rr))
	defer srv.Close()
	defer s.Close()

	raw, dom := loadPage(t, browser, srv.URL+"/", 20*time.Second)
	var got probeResult
	if out := dom.Find("id", "probe"); len(out) != 1 || json.Unmarshal([]byte(out[0].Attr("data-result")), &got) != nil {
		t.Fatalf("the probe left no result: DOM:\n%s", raw)
	}
	if got.Step != "done" || got.Error != "" {
		t.Fatalf("the probe stopped after %q: %s\nDOM:\n%s", got.Step, got.Error, raw)
	}
	if got.Selected != "192.0.2.10:80" || got.AfterRefresh.Text != got.Selected || !got.AfterRefresh.Connected {
		t.Errorf("selected %q; after two refreshes the selection is %q (in the document: %v)",
			got.Selected, got.AfterRefresh.Text, got.AfterRefresh.Connected)
	}
	if got.AcceptedBefore == got.AcceptedAfter {
		t.Errorf("accepted read %s before and after two refreshes: the card did not update", got.AcceptedAfter)
	}
	if !got.FoldOpen {
		t.Error("the fold of rtb's upstreams the admin opened closed at a refresh")
	}
	if got.Scrolled == 0 || got.ScrollAfter != got.Scrolled {
		t.Errorf("scrolled to %v, at %v after two refreshes", got.Scrolled, got.ScrollAfter)
	}
	if got.SelectedClient != "198.51.100.7:40000" || got.AfterReload.Text != got.SelectedClient || !got.AfterReload.Connected {
		t.Errorf("selected the rejected client %q; after the reload the selection is %q (in the document: %v)",
			got.SelectedClient, got.AfterReload.Text, got.AfterReload.Connected)
	}
	if want := []probeKept{{"cms-http", true}, {"cms-ftp", false}, {"rtb", true}}; !reflect.DeepEqual(got.Cards, want) {
		t.Errorf("cards after the reload %+v, want %+v (kept: the same element as before)", got.Cards, want)
	}
	if want := []probeKept{{"192.0.2.10:80", true}, {"192.0.2.11:80", false}}; !reflect.DeepEqual(got.Upstreams, want) {
		t.Errorf("cms-http upstreams after the reload %+v, want %+v", got.Upstreams, want)
	}
}

// probing serves the admin endpoint h with the probe script added to the
// page, and POST /reload, which switches rr to its second listener set.
func probing(t *testing.T, h http.Handler, rr *reloadingRelay) http.Handler {
	index, err := page.ReadFile("page/index.html")
	if err != nil {
		t.Fatal(err)
	}
	probe, err := os.ReadFile(filepath.Join("testdata", "page_probe.js"))
	if err != nil {
		t.Fatal(err)
	}
	withProbe := strings.Replace(string(index), "</head>", `<script src="probe.js" defer></script></head>`, 1)
	if withProbe == string(index) {
		t.Fatal("index.html has no </head> to add the probe before")
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(withProbe))
	})
	mux.HandleFunc("GET /probe.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Write(probe)
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) { rr.reloaded.Store(true) })
	return mux
}
