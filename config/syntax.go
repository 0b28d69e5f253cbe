package config

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// syntaxError turns a YAML parser error into a FieldError at the line at
// fault.
//
// The parser names the line of the construct it was reading when it gave
// up, such as the start of a block list (and for parser errors counts it
// from zero), which can be far above the mistake. The line reported here is
// instead the first line that makes the file invalid: the file up to the
// line before it parses, up to it does not. For a misindented key that is
// the key's own line; for a list or quote never closed, the line that
// opened it. A binary search over prefixes finds it in a few parses of a
// file whose size Load has already bounded.
func syntaxError(name string, data []byte, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, text, ok := strings.Cut(rest, ": "); ok {
			msg = text // the parser's line number is replaced below
		}
	}
	ends := lineEnds(data)
	lo, hi := 0, len(ends) // the first lo lines parse, the first hi do not
	if hi == 0 {
		return &FieldError{Where: name, Msg: "YAML: " + msg}
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if parses(data[:ends[mid-1]]) {
			lo = mid
		} else {
			hi = mid
		}
	}
	line := hi
	if strings.Contains(msg, "UTF-8") {
		// "invalid trailing UTF-8 octet": an accented letter saved by an
		// editor in a legacy encoding; its indentation is not the point.
		return &FieldError{Where: fmt.Sprintf("%s:%d", name, line), line: line,
			Msg: "YAML: this line is not UTF-8 text (saved as Latin-1 or Windows-1252?): save the file as UTF-8"}
	}
	msg += indentHint(data[endOf(ends, line-1):ends[line-1]], lo, data[:endOf(ends, lo)])
	return &FieldError{Where: fmt.Sprintf("%s:%d", name, line), Msg: "YAML: " + msg, line: line}
}

// lineEnds returns the offset just past each line of data (past its '\n',
// or the end of data for a last line without one).
func lineEnds(data []byte) []int {
	var ends []int
	for off := 0; off < len(data); {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			ends = append(ends, len(data))
			break
		}
		off += i + 1
		ends = append(ends, off)
	}
	return ends
}

// endOf is the offset just past the first lines lines.
func endOf(ends []int, lines int) int {
	if lines == 0 {
		return 0
	}
	return ends[lines-1]
}

func parses(data []byte) bool {
	var n yaml.Node
	return yaml.Unmarshal(data, &n) == nil
}

// indentHint explains a bad line by its indentation: a tab, or a different
// indentation than the nearest key above it (whose path and line it names),
// which is what a person compares when a key is one space off.
func indentHint(line []byte, goodLines int, good []byte) string {
	line = bytes.TrimRight(line, "\r\n")
	spaces := len(line) - len(bytes.TrimLeft(line, " "))
	rest := line[spaces:]
	switch {
	case bytes.HasPrefix(rest, []byte("\t")):
		return " (indent with spaces, not tabs)"
	case len(rest) == 0 || rest[0] == '#' || rest[0] == '-' || goodLines == 0:
		return "" // a list item or no key above to compare with
	}
	var doc yaml.Node
	if yaml.Unmarshal(good, &doc) != nil || len(doc.Content) == 0 {
		return ""
	}
	path, key := lastKey(doc.Content[0], "")
	if key == nil || key.Column-1 == spaces {
		return ""
	}
	return fmt.Sprintf(" (this line is indented %d spaces, %s on line %d is indented %d)",
		spaces, path, key.Line, key.Column-1)
}

// lastKey returns the mapping key under n that comes last in the file, and
// its key path.
func lastKey(n *yaml.Node, path string) (string, *yaml.Node) {
	var bestPath string
	var best *yaml.Node
	consider := func(p string, k *yaml.Node) {
		if k != nil && (best == nil || k.Line > best.Line || k.Line == best.Line && k.Column > best.Column) {
			bestPath, best = p, k
		}
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for i, item := range n.Content {
			consider(lastKey(item, indexPath(path, i)))
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			child := joinPath(path, n.Content[i].Value)
			consider(child, n.Content[i])
			consider(lastKey(n.Content[i+1], child))
		}
	}
	return bestPath, best
}
