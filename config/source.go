package config

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// sources remembers where each key's value came from, so that an error can
// say "relay.yaml:14" or "environment RELAY_LOG__LEVEL" beside the key path.
// koanf merges values but forgets their origin; the YAML node tree keeps
// lines, and the env and flag loaders record what they set.
type sources struct {
	file  string
	lines map[string]int    // key path -> line of the key in the file
	env   map[string]string // key path -> environment variable that set it
	flags map[string]string // key path -> flag name that set it
}

// locate finds the origin of the value at path: the layer that set path
// itself; else a flag or variable that set a key below it (a misspelt
// RELAY__LOG__LEVEL sets "_log.level", and the problem is at "_log"); else
// the origin of its nearest ancestor. Later layers win: a flag over the
// environment over the file.
func (s *sources) locate(path string) (where string, line int) {
	if where, line, ok := s.at(path); ok {
		return where, line
	}
	for _, layer := range []struct {
		names  map[string]string
		prefix string
	}{{s.flags, "flag -"}, {s.env, "environment "}} {
		var first string // of several, the first by key, so errors read the same every run
		for key, name := range layer.names {
			if strings.HasPrefix(key, path+".") && (first == "" || key < first) {
				first, where = key, layer.prefix+name
			}
		}
		if first != "" {
			return where, 0
		}
	}
	for p := parentPath(path); p != ""; p = parentPath(p) {
		if where, line, ok := s.at(p); ok {
			return where, line
		}
	}
	return s.file, 0
}

// at is the origin of the value at exactly path, if a layer set it.
func (s *sources) at(path string) (where string, line int, ok bool) {
	if f, ok := s.flags[path]; ok {
		return "flag -" + f, 0, true
	}
	if v, ok := s.env[path]; ok {
		return "environment " + v, 0, true
	}
	if l, ok := s.lines[path]; ok {
		return s.file + ":" + strconv.Itoa(l), l, true
	}
	return "", 0, false
}

// parentPath strips the last step of a key path: "a.b[2]" -> "a.b" -> "a".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// parseYAML parses data for its node tree. A syntax error comes back as one
// FieldError naming the file and line; the document must be a mapping (or
// empty).
func parseYAML(name string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(name, data, err)}
	}
	first := 0
	if len(doc.Content) > 0 {
		first = doc.Content[0].Line
	}
	if line := secondDocument(data, first); line > 0 {
		return nil, Errors{{Where: fmt.Sprintf("%s:%d", name, line), line: line,
			Msg: "a second YAML document (after ---): relay reads one; put everything in the first"}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, Errors{{Where: fmt.Sprintf("%s:%d", name, root.Line), line: root.Line,
			Msg: "the top level must be a mapping of keys (log:, listeners:, ...)"}}
	}
	return root, nil
}

// secondDocument returns the line of a second YAML document in data that
// holds anything (or does not parse), or 0; the first document's content
// starts at line first. yaml.Unmarshal reads the first document only, so
// the listeners of a second one (two configs pasted into one file) would
// be dropped without a word.
func secondDocument(data []byte, first int) int {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if dec.Decode(&doc) != nil {
		return 0
	}
	err := dec.Decode(&doc)
	switch {
	case err == io.EOF:
		return 0
	case err == nil && (len(doc.Content) == 0 || doc.Content[0].Tag == "!!null"):
		return 0 // "---" with nothing after it
	case err == nil:
		return doc.Line
	}
	// A second document that does not parse: its marker is the first
	// "---" line after the first document's content began.
	for i, line := range bytes.Split(data, []byte("\n")) {
		if i+1 > first && bytes.HasPrefix(line, []byte("---")) {
			return i + 1
		}
	}
	return first
}

// indexYAML records the line of every key path under n and reports keys
// written twice in one mapping (which the decoder would refuse with a less
// precise message).
func indexYAML(n *yaml.Node, path string, lines map[string]int, p *problems) {
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			indexYAML(n.Alias, path, lines, p)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			child := indexPath(path, i)
			lines[child] = item.Line
			indexYAML(item, child, lines, p)
		}
	case yaml.MappingNode:
		seen := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if key.Value == "<<" && key.Tag == "!!merge" {
				// Merged keys appear under path itself, from one
				// mapping or a list of them.
				if val.Kind == yaml.SequenceNode {
					for _, m := range val.Content {
						indexYAML(m, path, lines, p)
					}
				} else {
					indexYAML(val, path, lines, p)
				}
				continue
			}
			if what := notAName(key); what != "" {
				// koanf would drop a null key in silence, and refuse a
				// list or mapping as a key in lines of its own.
				p.list = append(p.list, &FieldError{Path: path, line: key.Line,
					Where: fmt.Sprintf("%s:%d", p.src.file, key.Line),
					Msg:   "a key must be a name (like listeners:), this one is " + what})
				continue
			}
			if before, after, dotted := strings.Cut(key.Value, "."); dotted {
				// A key path as written in the README ("log.level") is
				// not a key: the file nests it.
				p.list = append(p.list, &FieldError{Path: path, line: key.Line,
					Where: fmt.Sprintf("%s:%d", p.src.file, key.Line),
					Msg: fmt.Sprintf("key %q has a dot: a file nests its keys, so write %q and under it, indented, %q",
						key.Value, before+":", after+":")})
				continue
			}
			child := joinPath(path, key.Value)
			if first, dup := seen[key.Value]; dup {
				p.list = append(p.list, &FieldError{Path: child, line: key.Line,
					Where: fmt.Sprintf("%s:%d", p.src.file, key.Line),
					Msg:   fmt.Sprintf("key written twice (first at line %d)", first)})
				continue
			}
			seen[key.Value] = key.Line
			lines[child] = key.Line
			indexYAML(val, child, lines, p)
		}
	}
}

// notAName says what a mapping key is when it is not a name: nothing (~,
// null), a list, a mapping, an alias; "" for a name.
func notAName(key *yaml.Node) string {
	switch {
	case key.Kind == yaml.SequenceNode:
		return "a list"
	case key.Kind == yaml.MappingNode:
		return "a mapping"
	case key.Kind == yaml.AliasNode:
		return "an alias (*" + key.Value + ")"
	case key.Kind == yaml.ScalarNode && key.Tag == "!!null":
		return "nothing (" + strconv.Quote(key.Value) + " is null in YAML)"
	}
	return ""
}
