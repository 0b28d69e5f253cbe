package daemon

import (
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
