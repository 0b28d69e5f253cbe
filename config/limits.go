package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"go.yaml.in/yaml/v3"
)

// Bounds on what a config may cost to read, so that a hostile or broken
// file (an alias bomb: 1.5 KB of nested aliases that expand to 1.2 GiB) is
// refused at once, by relay check, at start and on reload alike, instead of
// taking the memory of a running relay. A real config is a few KiB and a
// few thousand values.
const (
	maxFileSize = 1 << 20 // bytes
	maxValues   = 100_000 // YAML values (keys, scalars, lists, mappings) with aliases expanded
)

// readLimited reads r, refusing more than maxFileSize bytes.
func readLimited(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	var named *fs.PathError // a file's error names it already: "read DIR: is a directory"
	if errors.As(err, &named) {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("config: %s is larger than 1 MiB, which no relay config needs", name)
	}
	return data, nil
}

// checkExpansion counts the values of the node tree as the decoder would
// see them, each alias replaced by what it names, and refuses a tree past
// maxValues or an alias inside the value it names. The count takes one
// pass: each node's expanded size is computed once and remembered.
func checkExpansion(name string, root *yaml.Node) error {
	e := expansion{memo: make(map[*yaml.Node]int), busy: make(map[*yaml.Node]bool)}
	e.size(root)
	switch {
	case e.cycle != nil:
		return Errors{{Where: fmt.Sprintf("%s:%d", name, e.cycle.Line), line: e.cycle.Line,
			Msg: "YAML: an alias refers to the value it is part of"}}
	case e.over != nil:
		return Errors{{Where: fmt.Sprintf("%s:%d", name, e.over.Line), line: e.over.Line,
			Msg: fmt.Sprintf("YAML: aliases expand to more than %d values here; a relay config needs far fewer", maxValues)}}
	}
	return nil
}

type expansion struct {
	memo  map[*yaml.Node]int  // expanded size of each node seen, at most maxValues+1
	busy  map[*yaml.Node]bool // nodes being counted, to catch an alias to an ancestor
	over  *yaml.Node          // the innermost node whose expansion passed maxValues
	cycle *yaml.Node          // an alias found inside the value it names
}

func (e *expansion) size(n *yaml.Node) int {
	if s, ok := e.memo[n]; ok {
		return s
	}
	if e.busy[n] {
		e.cycle = n
		return maxValues + 1
	}
	e.busy[n] = true
	children := n.Content
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		children = []*yaml.Node{n.Alias}
	}
	total := 1
	for _, c := range children {
		total += e.size(c)
		if total > maxValues {
			total = maxValues + 1
			if e.over == nil {
				e.over = n
			}
			break
		}
	}
	delete(e.busy, n)
	e.memo[n] = total
	return total
}
