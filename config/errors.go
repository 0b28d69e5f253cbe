package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem with the configuration, at one key.
type FieldError struct {
	Path  string // key path, like "listeners[2].upstream"; empty for the file as a whole
	Where string // "relay.yaml:14", "environment RELAY_LOG__LEVEL", "flag -log-level", or empty
	Msg   string

	line int // file line behind Where, for ordering; zero when unknown
}

// Error reads "relay.yaml:14: listeners[2].upstream: msg", leaving out the
// parts that are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Where != "" {
		b.WriteString(e.Where)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, in file order. Load
// returns it (as error) when the configuration is invalid; one line each.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *FieldError.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// problems collects FieldErrors while a configuration is checked.
type problems struct {
	src  *sources
	list Errors
}

// add records msg at path, located by where the value at path came from.
func (p *problems) add(path, msg string) {
	where, line := p.src.locate(path)
	p.list = append(p.list, &FieldError{Path: path, Where: where, Msg: msg, line: line})
}

func (p *problems) addf(path, format string, args ...any) {
	p.add(path, fmt.Sprintf(format, args...))
}

// err returns the problems in file order (those without a line last), or nil.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	slices.SortStableFunc(p.list, func(a, b *FieldError) int {
		if (a.line == 0) != (b.line == 0) {
			if a.line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.line, b.line)
	})
	return p.list
}
