package daemon

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v3/test"

	"github.com/edgerelay/relay/internal/world"
)

// ticket is a short print job, a line per field, as a box office sends it.
var ticket = []string{"^XA", "^FO40,40^FDDie Zauberfloete^FS", "^FO40,90^FDParkett links, Reihe 7, Platz 12^FS", "^XZ"}

// printJob sends job to at and returns the SHA-256 of what came back, a
// line per line sent, and how long it took; an error when the relay closed
// the connection first.
func printJob(t *testing.T, at string, job []string) ([sha256.Size]byte, time.Duration, error) {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", at, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, strings.Join(job, "\n")+"\n"); err != nil {
		return [sha256.Size]byte{}, 0, err
	}
	var got bytes.Buffer
	for got.Len() < len(venueEcho(job)) {
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return sha256.Sum256(got.Bytes()), time.Since(start), fmt.Errorf("after %d bytes: %w", got.Len(), err)
		}
	}
	return sha256.Sum256(got.Bytes()), time.Since(start), nil
}

// venueEcho is what renewedVenue answers to job.
func venueEcho(job []string) []byte {
	var b bytes.Buffer
	for _, line := range job {
		fmt.Fprintf(&b, "venue:%s\n", line)
	}
	return b.Bytes()
}

// TestReloadFixedTLSTriesUpstreamAtOnce: a box office trusts the wrong CA
// (or names the venue wrong), so its first print job fails the venue's
// handshake and the venue is down. The admin fixes the CA file (or the
// server_name) and reloads: the very next job is printed, at once, not
// after the venue's next re-try (seconds away), and the reset is logged
// with its reason. Before, every job until that re-try was closed at once
// without a dial, and the admin who tested the fix saw it fail.
func TestReloadFixedTLSTriesUpstreamAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ca, fixedCA   bool   // ca.crt: renewedVenue's old CA, then its renewed one
		tls, fixedTLS string // upstream_tls before and after
		reason        string
	}{
		{"ca file", true, true, "{ca: ca.crt}", "{ca: ca.crt}", "upstream_tls files changed"},
		{"server_name", false, false, "{ca: ca.crt, server_name: venue.test}", "{ca: ca.crt}", "upstream_tls changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(test.CheckRoutines(t))
			venue, oldCA, renewedCA := renewedVenue(t)
			at := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
			render := func(tls string) string {
				return fmt.Sprintf("listeners:\n  - {name: printer, mode: tcp, listen: %q, upstream: %q, upstream_tls: %s}\n",
					at, venue.Addr(), tls)
			}
			ca := renewedCA
			if tc.ca {
				ca = oldCA
			}
			w := startWorld(t, render(tc.tls), map[string]string{"ca.crt": ca})
			if _, _, err := printJob(t, at, ticket); err == nil {
				t.Fatal("a job went through to a venue the box office cannot verify")
			}
			w.logs.Wait(t, `"message":"upstream down"`, "tls with")
			// Two re-tries (1 s and 3 s after) reach the venue and fail;
			// the next is 4 s away, so a job printed within a second of
			// the reload was not let through by a re-try.
			world.Eventually(t, "two re-tries of the venue", func() bool { return venue.Accepted() >= 3 })
			if _, _, err := printJob(t, at, ticket); err == nil {
				t.Fatal("a job went through while the venue was down")
			}

			if tc.fixedCA {
				w.writeFile("ca.crt", renewedCA)
			}
			w.writeFile("relay.yaml", render(tc.fixedTLS))
			if err := w.d.Reload(); err != nil {
				t.Fatalf("reload: %v", err)
			}
			sum, took, err := printJob(t, at, ticket)
			if err != nil {
				t.Fatalf("the job after the reload that fixed TLS: %v\n%s", err, w.logs)
			}
			if want := sha256.Sum256(venueEcho(ticket)); sum != want {
				t.Errorf("the job came back as %x, want %x", sum, want)
			}
			if took >= time.Second {
				t.Errorf("the job took %s: it waited for a re-try", took)
			}
			line := w.logs.Wait(t, `"message":"upstream state reset"`)
			f := world.CheckFields(t, line, "level", "time", "message", "listener", "upstreams", "reason")
			if ups, _ := f["upstreams"].([]any); f["level"] != "info" || f["listener"] != "printer" ||
				len(ups) != 1 || ups[0] != venue.Addr() || f["reason"] != tc.reason {
				t.Errorf("reset line: %s", line)
			}
			if n := w.logs.Count("a probe answered"); n != 0 {
				t.Errorf("a re-try brought the venue back, not the reload:\n%s", w.logs)
			}
			_ = w.d.Close()
		})
	}
}

// TestReloadKeepsDeadUpstreamDown: the primary of a box office is dead (its
// connect is refused), its backup a venue over TLS. A reload that changes
// nothing of the listener, then one that changes its CA file, keep the
// primary down: jobs go to the backup without a dial of the primary, and
// nothing is reset (no new CA makes a refused connect answer). A reload
// that changes connect_timeout tries it again.
func TestReloadKeepsDeadUpstreamDown(t *testing.T) {
	t.Cleanup(test.CheckRoutines(t))
	venue, oldCA, renewedCA := renewedVenue(t)
	primary, at := world.DeadAddr(t), fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	admin := adminOn(t)
	render := func(timeout, more string) string {
		return admin + fmt.Sprintf(`listeners:
  - name: printer
    mode: tcp
    listen: %s
    upstream: [%s, %s]
    upstream_tls: {ca: ca.crt}
    connect_timeout: %s
%s`, at, primary, venue.Addr(), timeout, more)
	}
	w := startWorld(t, render("5s", ""), map[string]string{"ca.crt": renewedCA})
	want := sha256.Sum256(venueEcho(ticket))
	job := func(when string) {
		t.Helper()
		if sum, _, err := printJob(t, at, ticket); err != nil || sum != want {
			t.Fatalf("%s: %x %v, want %x", when, sum, err, want)
		}
	}
	job("before the reloads")
	w.logs.Wait(t, `"message":"upstream down"`, primary)
	primaryDown := fmt.Sprintf(`relay_upstream_up{listener="printer",upstream=%q} 0`, primary)
	metricsSay(t, w, primaryDown, `relay_upstream_dial_failures_total{listener="printer"} 1`)

	other := fmt.Sprintf("  - {name: other, mode: tcp, listen: \"127.0.0.1:%d\", upstream: %q}\n", freePort(t, "tcp"), world.DeadAddr(t))
	w.writeFile("relay.yaml", render("5s", other))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	job("after a reload of another listener")
	w.writeFile("ca.crt", renewedCA+oldCA)
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	job("after a reload with a new CA file")
	metricsSay(t, w, primaryDown, `relay_upstream_dial_failures_total{listener="printer"} 1`)
	if n := w.logs.Count("upstream state reset"); n != 0 {
		t.Errorf("a reset of a primary whose connect was refused:\n%s", w.logs)
	}

	w.writeFile("relay.yaml", render("3s", other))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	line := w.logs.Wait(t, `"message":"upstream state reset"`)
	if !world.ContainsAll(line, `"listener":"printer"`, primary, "connect_timeout changed") || strings.Contains(line, venue.Addr()) {
		t.Errorf("reset line: %s", line)
	}
	job("after a reload with a new connect_timeout")
	w.logs.Wait(t, "retired listener drained")
	metricsSay(t, w, `relay_upstream_dial_failures_total{listener="printer"} 2`)
	if n := w.logs.Count(`"message":"upstream down"`, primary); n != 2 {
		t.Errorf("the primary went down %d times, want 2 (before the reloads, after the reset):\n%s", n, w.logs)
	}
	_ = w.d.Close()
}
