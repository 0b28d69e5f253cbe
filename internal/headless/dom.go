package headless

import (
	"strings"

	"golang.org/x/net/html"
)

// Node is an element of a dumped DOM.
type Node struct{ n *html.Node }

// Parse reads a DOM that DumpDOM returned.
func Parse(dom string) (Node, error) {
	n, err := html.Parse(strings.NewReader(dom))
	return Node{n}, err
}

// Find returns the elements under n whose attribute key is val, in document
// order.
func (n Node) Find(key, val string) []Node {
	var out []Node
	var walk func(*html.Node)
	walk = func(h *html.Node) {
		if h.Type == html.ElementNode {
			for _, a := range h.Attr {
				if a.Key == key && a.Val == val {
					out = append(out, Node{h})
					break
				}
			}
		}
		for c := h.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	if n.n != nil {
		walk(n.n)
	}
	return out
}

// Text returns the text under n, whitespace runs folded to one space.
func (n Node) Text() string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(h *html.Node) {
		if h.Type == html.TextNode {
			b.WriteString(h.Data)
			b.WriteByte(' ')
		}
		for c := h.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	if n.n != nil {
		walk(n.n)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// Attr returns n's attribute key, "" when absent.
func (n Node) Attr(key string) string {
	if n.n == nil {
		return ""
	}
	for _, a := range n.n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
