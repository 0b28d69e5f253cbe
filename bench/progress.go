package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress keeps one status line on stderr: which scenario, forwarder and
// run is going, and for how long the bench has been at it. On a terminal the
// line is rewritten in place; elsewhere (CI logs, files) each step is a line.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	runs  int
	index int // scenario being run, from 1
	total int // scenarios in this bench run
}

func newProgress(w *os.File, runs, total int) *progress {
	st, err := w.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0
	return &progress{w: w, tty: tty, start: time.Now(), runs: runs, total: total}
}

// scenario moves on to the next scenario.
func (p *progress) scenario(i int) { p.index = i }

// show prints the status line; run 0 means a step outside the runs.
func (p *progress) show(sc, what string, run int) {
	line := fmt.Sprintf("[%d/%d %s] %-8s %-17s", p.index, p.total, fmtClock(time.Since(p.start)), sc, what)
	if run > 0 {
		line += fmt.Sprintf(" run %d/%d", run, p.runs)
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// note prints a line that stays, above the status line.
func (p *progress) note(format string, args ...any) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// done clears the status line.
func (p *progress) done() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// fmtClock formats a duration as m:ss.
func fmtClock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
