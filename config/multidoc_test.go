package config

import "testing"

// TestSecondDocumentRefused: a file of two YAML documents ("---" between
// them, as when two configs are pasted into one) is refused at the line of
// the second. Only the first was read: the listeners of the second were
// dropped without a word.
func TestSecondDocumentRefused(t *testing.T) {
	const a = "listeners:\n  - {name: a, mode: tcp, listen: \"127.0.0.1:7001\", upstream: \"127.0.0.1:7002\"}\n"
	const b = "listeners:\n  - {name: b, mode: tcp, listen: \"127.0.0.1:7003\", upstream: \"127.0.0.1:7002\"}\n"
	es := problemsOf(t, a+"---\n"+b)
	if len(es) != 1 || es[0].Where != "t.yaml:3" || es[0].Msg != "a second YAML document (after ---): relay reads one; put everything in the first" {
		t.Errorf("problems %q", es)
	}
	es = problemsOf(t, a+"---\nlisteners: [\n")
	if len(es) != 1 || es[0].Where != "t.yaml:3" {
		t.Errorf("a second document that does not parse: problems %q", es)
	}
	es = problemsOf(t, "---\n# nothing yet\n---\n"+b)
	if len(es) != 1 || es[0].Where != "t.yaml:3" {
		t.Errorf("an empty first document: problems %q", es)
	}
	// A document marker before the only document, or after it with
	// nothing more, is still one document.
	for _, yaml := range []string{"---\n" + a, a + "---\n", a + "...\n", "# comment\n---\n" + a + "---\n# the end\n"} {
		if _, err := parseString(t, yaml); err != nil {
			t.Errorf("%q: %v", yaml, err)
		}
	}
}
