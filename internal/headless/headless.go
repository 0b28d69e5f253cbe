// Package headless runs Debian's chromium without a display, for tests of
// the admin status page: it loads a URL, lets the page's scripts run for a
// budget of virtual time, and returns the DOM they left, or a screenshot.
// New skips the test when chromium is not installed (.ci/install-deps
// installs it). It starts no server; the test serves the page.
//
// Chromium is kept off the network beyond the page: no background
// services, and every host name resolves to nothing but the ones a test
// maps to 127.0.0.1 (Browser.Resolve), so only loopback can load.
package headless

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Browser runs chromium with a profile folder of its own. Its methods
// return errors rather than failing the test, so a test may call them from
// a goroutine it starts.
type Browser struct {
	bin, profile string
	loopback     []string // names that resolve to 127.0.0.1 (Resolve)
}

// New finds chromium, or skips tb when it is missing.
func New(tb testing.TB) *Browser {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return &Browser{bin: p, profile: tb.TempDir()}
		}
	}
	tb.Skip("chromium is not installed (apt-get install chromium; .ci/install-deps does it)")
	return nil
}

// Resolve makes name resolve to 127.0.0.1 in later loads, as a name
// re-pointed at the relay (DNS rebinding) or a name the admin gave the box
// would: the page then sees name as its origin and sends it as Host. No
// resolver is asked; every other name still fails.
func (b *Browser) Resolve(name string) { b.loopback = append(b.loopback, name) }

// run starts chromium headless on url with extra flags and returns stdout.
// budget is the virtual time the page's timers get before chromium
// reports; it does not pass while a fetch is pending.
func (b *Browser) run(url string, budget time.Duration, extra ...string) ([]byte, error) {
	args := []string{
		"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-default-apps", "--disable-domain-reliability",
		"--no-pings", "--disable-breakpad", "--metrics-recording-only", "--mute-audio",
		// Every name fails but those of Resolve (the first rule that
		// matches applies); loopback IP literals (which the rules would
		// otherwise catch too) stay reachable.
		"--host-resolver-rules=" + b.mapped() + "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2, EXCLUDE [::1]",
		"--user-data-dir=" + b.profile,
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
	}
	if os.Geteuid() == 0 {
		args = append(args, "--no-sandbox") // chromium refuses to run its sandbox as root
	}
	args = append(append(args, extra...), url)
	// Chromium's first start on a busy 2-core box takes tens of seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, args...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("chromium %s: %w\n%s", url, err, stderr.String())
	}
	return out, nil
}

// mapped is the resolver rules for the names of Resolve, each ending ", ".
func (b *Browser) mapped() string {
	var rules strings.Builder
	for _, name := range b.loopback {
		rules.WriteString("MAP " + name + " 127.0.0.1, ")
	}
	return rules.String()
}

// DumpDOM loads url, lets its scripts run for budget of virtual time, and
// returns the serialised DOM.
func (b *Browser) DumpDOM(url string, budget time.Duration) (string, error) {
	out, err := b.run(url, budget, "--dump-dom")
	return string(out), err
}

// Screenshot loads url in a window of width x height CSS pixels, lets its
// scripts run for budget, and writes a PNG to path.
func (b *Browser) Screenshot(url, path string, width, height int, budget time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if _, err := b.run(url, budget, "--hide-scrollbars", "--screenshot="+path,
		fmt.Sprintf("--window-size=%d,%d", width, height)); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot at %s: %v", path, err)
	}
	return nil
}

// ArtefactDir is where tests leave screenshots for people to look at:
// $RELAY_TEST_ARTEFACTS, or relay-test-artefacts in the temp folder.
func ArtefactDir() string {
	if d := os.Getenv("RELAY_TEST_ARTEFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "relay-test-artefacts")
}

// limitedBuffer keeps the last 8 KiB written, for error messages.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 8<<10 {
		l.b = l.b[len(l.b)-8<<10:]
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
