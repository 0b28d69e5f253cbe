package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"
	"github.com/prometheus/client_golang/prometheus"
)

// running starts a Server on a loopback port. It returns the server, its
// base URL, and a stop func to defer after the leak check is deferred, so
// that it runs first.
func running(t *testing.T, cfg Config) (*Server, string, func()) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	stop := func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	}
	return s, "http://" + s.Addr().String(), stop
}

// client makes requests without keep-alive, so no transport goroutine
// outlives a test's leak check.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthz(t *testing.T) {
	defer test.CheckRoutines(t)()
	var bound atomic.Bool
	_, url, stop := running(t, Config{Ready: bound.Load})
	defer stop()

	if code, body := get(t, url+"/healthz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready") {
		t.Errorf("before bind: %d %q, want 503 not ready", code, body)
	}
	if code, body := get(t, url+"/metrics"); code != http.StatusOK || !strings.Contains(body, "\nrelay_ready 0\n") {
		t.Errorf("before bind: /metrics %d, relay_ready 0 missing", code)
	}
	bound.Store(true)
	if code, body := get(t, url+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("after bind: %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, _ := get(t, url+"/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", code)
	}
}

func TestHealthzNilReadyIsReady(t *testing.T) {
	defer test.CheckRoutines(t)()
	_, url, stop := running(t, Config{})
	defer stop()
	if code, body := get(t, url+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("%d %q, want 200 ok", code, body)
	}
}

// TestOwnRegistry: two servers in one process must not clash, which they
// would on the global default registry; and the Go and process collectors
// are on each.
func TestOwnRegistry(t *testing.T) {
	defer test.CheckRoutines(t)()
	_, url1, stop1 := running(t, Config{})
	defer stop1()
	_, url2, stop2 := running(t, Config{})
	defer stop2()
	for _, url := range []string{url1, url2} {
		code, body := get(t, url+"/metrics")
		for _, want := range []string{"\ngo_goroutines ", "\nprocess_cpu_seconds_total ", "\nrelay_ready 1\n"} {
			if code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s/metrics: %d, %q missing", url, code, strings.TrimSpace(want))
			}
		}
	}
}

func TestExtraCollectors(t *testing.T) {
	reloads := prometheus.NewCounter(prometheus.CounterOpts{Name: "relay_reloads_total", Help: "Reloads."})
	reloads.Add(2)
	s, err := New(Config{Collectors: []prometheus.Collector{reloads}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Collectors: []prometheus.Collector{reloads, reloads}}); err == nil {
		t.Error("registering one collector twice: no error")
	}
	rec := httptestGet(t, s.Handler(), "/metrics")
	if !strings.Contains(rec, "\nrelay_reloads_total 2\n") {
		t.Errorf("relay_reloads_total 2 missing from\n%s", rec)
	}
}

func TestLifecycle(t *testing.T) {
	defer test.CheckRoutines(t)()

	t.Run("close before serve", func(t *testing.T) {
		s, err := New(Config{Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(); err == nil || errors.Is(err, ErrClosed) {
			t.Errorf("Serve before Listen: %v, want an error other than ErrClosed", err)
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		addr := s.Addr().String()
		for range 2 { // idempotent
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
		if err := s.Serve(); !errors.Is(err, ErrClosed) {
			t.Errorf("Serve after Close: %v, want ErrClosed", err)
		}
		if _, err := client.Get("http://" + addr + "/healthz"); err == nil {
			t.Error("listener still accepting after Close")
		}
	})

	t.Run("bind error", func(t *testing.T) {
		s, _, stop := running(t, Config{})
		defer stop()
		other, err := New(Config{Listen: s.Addr().String()})
		if err != nil {
			t.Fatal(err)
		}
		err = other.Listen()
		if err == nil || !strings.HasPrefix(err.Error(), "admin: listen tcp4 "+s.Addr().String()) {
			t.Errorf("second bind on %s: %v", s.Addr(), err)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		s, err := New(Config{Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve() }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve after Shutdown: %v, want ErrClosed", err)
		}
	})
}

// TestCloseWaitsForScrape: Close must not return while a scrape is still
// reading the listeners' Stats.
func TestCloseWaitsForScrape(t *testing.T) {
	defer test.CheckRoutines(t)()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	gather := func() []Snapshot {
		once.Do(func() { close(entered) })
		<-release
		return nil
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Gather: gather})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	scraped := make(chan error, 1)
	go func() {
		_, err := client.Get("http://" + s.Addr().String() + "/metrics")
		scraped <- err
	}()
	<-entered
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Error("Close returned while a scrape was still gathering")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	<-scraped // the connection was closed under the request: an error is expected
	if err := <-served; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve: %v, want ErrClosed", err)
	}
}
