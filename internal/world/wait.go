package world

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitLimit bounds every wait in this package: long enough for a loaded
// 2-core CI box under -race, short enough that a hang fails the test.
const WaitLimit = 10 * time.Second

// Eventually polls cond every few milliseconds until it holds and fails tb
// (naming what) after WaitLimit. It is for state that changes in the
// background with no event to wait on, such as a counter that settles just
// after the client saw the effect; a log line is awaited with
// LogBuffer.Wait instead. Call it from the test goroutine only.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(WaitLimit); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", WaitLimit, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// LogBuffer collects log output from several goroutines and wakes its
// waiters on every write, so a test waits for a log line without polling.
// The zero value is ready to use. Each Write is taken as whole lines (as
// zerolog writes them, one event per call).
type LogBuffer struct {
	mu      sync.Mutex // guards the following
	buf     bytes.Buffer
	written chan struct{} // closed on the next write; nil while nobody waits
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return len(p), nil
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Lines returns the lines that contain every one of parts, in order.
func (l *LogBuffer) Lines(parts ...string) []string {
	return matching(l.String(), parts)
}

// Count is the number of lines that contain every one of parts.
func (l *LogBuffer) Count(parts ...string) int { return len(l.Lines(parts...)) }

// Wait waits until a line contains every one of parts and returns the
// first such line; it fails tb after WaitLimit, showing the whole log.
func (l *LogBuffer) Wait(tb testing.TB, parts ...string) string {
	tb.Helper()
	return l.WaitCount(tb, 1, parts...)[0]
}

// WaitCount waits until at least n lines contain every one of parts and
// returns them all; it fails tb after WaitLimit, showing the whole log.
func (l *LogBuffer) WaitCount(tb testing.TB, n int, parts ...string) []string {
	tb.Helper()
	deadline := time.NewTimer(WaitLimit)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		text := l.buf.String()
		if l.written == nil {
			l.written = make(chan struct{})
		}
		written := l.written
		l.mu.Unlock()
		if lines := matching(text, parts); len(lines) >= n {
			return lines
		}
		select {
		case <-written:
		case <-deadline.C:
			tb.Fatalf("waited %v for %d log lines with %q, have %d; log:\n%s",
				WaitLimit, n, parts, len(matching(text, parts)), text)
			return nil
		}
	}
}

func matching(text string, parts []string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if ContainsAll(line, parts...) {
			out = append(out, strings.TrimSuffix(line, "\n"))
		}
	}
	return out
}

// ContainsAll reports whether s contains every one of parts.
func ContainsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// JSONLine decodes one JSON log line into its fields and fails tb if the
// line is not a JSON object.
func JSONLine(tb testing.TB, line string) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		tb.Fatalf("log line %q: %v", line, err)
	}
	return m
}

// CheckFields decodes a JSON log line and fails tb (without stopping it)
// unless the line has exactly the fields keys, in any order, and every
// key ending in _ms holds a non-negative number: a duration is named with
// its unit. It returns the fields, for checks of their values.
func CheckFields(tb testing.TB, line string, keys ...string) map[string]any {
	tb.Helper()
	fields := JSONLine(tb, line)
	want := slices.Sorted(slices.Values(keys))
	if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, want) {
		tb.Errorf("log line has fields %q, want %q:\n%s", got, want, line)
	}
	for _, key := range keys {
		if v, ok := fields[key].(float64); strings.HasSuffix(key, "_ms") && (!ok || v < 0) {
			tb.Errorf("%s = %v, want milliseconds:\n%s", key, fields[key], line)
		}
	}
	return fields
}
