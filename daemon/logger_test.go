package daemon

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/internal/world"
)

// TestLevelFilter: events below the level are not built (Enabled is false,
// so callers skip formatting), derived loggers follow a level change at once,
// and a derived logger with its own sampler is still filtered by the writer.
func TestLevelFilter(t *testing.T) {
	var buf world.LogBuffer
	log, levels := NewLogger(&buf, "json", zerolog.WarnLevel)
	child := log.With().Str("listener", "web").Logger()
	burst := child.Sample(&zerolog.BurstSampler{Burst: 100, Period: time.Minute})

	if child.Info().Enabled() {
		t.Error("an info event is built at level warn")
	}
	child.Info().Msg("hidden-1")
	burst.Info().Msg("hidden-2")
	child.Warn().Msg("shown-1")

	levels.SetLevel(zerolog.InfoLevel)
	if !child.Info().Enabled() {
		t.Error("info is not enabled after SetLevel(info)")
	}
	child.Info().Msg("shown-2")
	burst.Info().Msg("shown-3")

	out := buf.String()
	for _, want := range []string{"shown-1", "shown-2", "shown-3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	for _, hidden := range []string{"hidden-1", "hidden-2"} {
		if strings.Contains(out, hidden) {
			t.Errorf("log has %s below the level:\n%s", hidden, out)
		}
	}
}

// TestLoggerLineFormat: JSON lines carry a millisecond timestamp and
// durations in milliseconds; console output to something that is not a
// terminal has no colour codes; a line costs no allocation.
func TestLoggerLineFormat(t *testing.T) {
	var buf world.LogBuffer
	log, _ := NewLogger(&buf, "json", zerolog.InfoLevel)
	log.Info().Dur("wait_ms", 1500*time.Millisecond).Msg("json line")
	fields := world.JSONLine(t, buf.Wait(t, "json line"))
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`)
	if ts, _ := fields["time"].(string); !stamp.MatchString(ts) {
		t.Errorf("time = %v, want RFC 3339 with milliseconds", fields["time"])
	}
	if fields["wait_ms"] != 1500.0 {
		t.Errorf("wait_ms = %v for 1.5 s, want 1500", fields["wait_ms"])
	}

	var console world.LogBuffer
	log, _ = NewLogger(&console, "console", zerolog.InfoLevel)
	log.Warn().Dur("wait_ms", 20*time.Millisecond).Msg("console line")
	line := console.Wait(t, "console line")
	if strings.Contains(line, "\x1b[") {
		t.Errorf("console output to a non-terminal has colour codes: %q", line)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} WRN console line wait_ms=20$`).MatchString(line) {
		t.Errorf("console line %q, want time with milliseconds, level, message, wait_ms=20", line)
	}

	log, _ = NewLogger(io.Discard, "json", zerolog.InfoLevel)
	if n := testing.AllocsPerRun(100, func() { log.Info().Str("end", "eof").Msg("x") }); n != 0 {
		t.Errorf("a log line allocates %v times", n)
	}
}

// TestReloadChangesLogFormat: a reload that changes log.format writes the
// next lines in the new format, as it changes log.level at once; the
// format stayed the one of the start, and "reload applied" said nothing
// of it.
func TestReloadChangesLogFormat(t *testing.T) {
	web := newTCPEcho(t, "web")
	yaml := "admin: {listen: \"\"}\nlog: {format: %s}\nlisteners:\n" +
		"  - {name: web, mode: tcp, listen: \"127.0.0.1:%d\", upstream: \"%s\"}\n"
	port := freePort(t, "tcp")
	w := startWorld(t, fmt.Sprintf(yaml, "json", port, web.addr()), nil)
	w.writeFile("relay.yaml", fmt.Sprintf(yaml, "console", port, web.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(w.logs.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "reload applied") || strings.HasPrefix(last, "{") {
		t.Errorf("the line after a reload to log.format console is %q, want a console line saying reload applied", last)
	}
	w.writeFile("relay.yaml", fmt.Sprintf(yaml, "json", port, web.addr()))
	if err := w.d.Reload(); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(w.logs.String()), "\n")
	if last = lines[len(lines)-1]; !strings.HasPrefix(last, "{") || !strings.Contains(last, `"reload applied"`) {
		t.Errorf("the line after a reload back to json is %q", last)
	}
}
