package daemon

import (
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// LevelFilter drops events below a level that can be changed while the
// relay runs. Every component holds a copy of one zerolog.Logger, so the
// level cannot live in the Logger itself; it lives in the writer they share,
// which is what lets a reload change the level at once for everybody.
// The format lives there too, so a reload changes it as well.
type LevelFilter struct {
	out io.Writer    // where every format writes
	w   atomic.Value // a formatWriter: out in the format in force
	min atomic.Int32 // a zerolog.Level
}

// formatWriter is the writer of one format; atomic.Value needs one
// concrete type.
type formatWriter struct{ zerolog.LevelWriter }

var (
	_ zerolog.LevelWriter = (*LevelFilter)(nil)
	_ zerolog.Sampler     = (*LevelFilter)(nil)
)

// SetLevel changes the least level that is written.
func (f *LevelFilter) SetLevel(l zerolog.Level) { f.min.Store(int32(l)) }

// Level reports the least level that is written.
func (f *LevelFilter) Level() zerolog.Level { return zerolog.Level(f.min.Load()) }

// SetFormat changes the format of the lines written from now on: "json",
// "console", or "auto" (console when the output is a terminal).
func (f *LevelFilter) SetFormat(format string) {
	w := f.out
	if format == "console" || (format == "auto" && isTerminal(w)) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: consoleTimeLayout, NoColor: !isTerminal(w)}
	}
	f.w.Store(formatWriter{zerolog.LevelWriterAdapter{Writer: w}})
}

func (f *LevelFilter) writer() zerolog.LevelWriter { return f.w.Load().(formatWriter) }

func (f *LevelFilter) Write(p []byte) (int, error) { return f.writer().Write(p) }

// Sample makes LevelFilter a zerolog.Sampler: an event below the current
// level is not even built (an access line at level warn would otherwise cost
// its formatting and timestamp on every connection, ~6 % of a short
// connection's CPU in forward's ConnRate benchmark).
func (f *LevelFilter) Sample(l zerolog.Level) bool { return l >= f.Level() || l == zerolog.NoLevel }

// WriteLevel writes p when l is at or above the current level. It still
// filters because a component may replace the sampler with its own (a
// burst sampler for a noisy line) on a logger derived from this one.
func (f *LevelFilter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < f.Level() && l != zerolog.NoLevel {
		return len(p), nil
	}
	return f.writer().WriteLevel(l, p)
}

// NewLogger builds the process logger writing to w. format is "json",
// "console", or "auto" (console when w is a terminal, else JSON). Console
// output is coloured only on a terminal. Every line carries its time to the
// millisecond; durations are numbers of milliseconds in fields named
// …_ms (zerolog's Dur, whose unit is the millisecond unless a program
// changes zerolog's globals, which relay never does). The returned filter
// changes the level and the format later (on reload).
func NewLogger(w io.Writer, format string, level zerolog.Level) (zerolog.Logger, *LevelFilter) {
	f := &LevelFilter{out: w}
	f.SetFormat(format)
	f.SetLevel(level)
	log := zerolog.New(f).Level(zerolog.TraceLevel).Sample(f).Hook(stamp{})
	return log, f
}

const (
	// timeLayout is RFC 3339 with milliseconds, in local time with its
	// offset: two lines of one busy second still show their order.
	timeLayout        = "2006-01-02T15:04:05.000Z07:00"
	consoleTimeLayout = "2006-01-02 15:04:05.000"
)

// stamp adds the time field to every event. zerolog's own Timestamp takes
// its format from a package global (seconds by default); a hook keeps the
// format with the logger that relay builds.
type stamp struct{}

func (stamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	var buf [len(timeLayout) + 8]byte // on the stack: no allocation per line
	b := append(buf[:0], '"')
	b = time.Now().AppendFormat(b, timeLayout)
	e.RawJSON(zerolog.TimestampFieldName, append(b, '"'))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}
