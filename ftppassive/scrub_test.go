package ftppassive

import (
	"bytes"
	"testing"
)

// pieces splits b at every CR and LF.
func pieces(b []byte) [][]byte {
	return bytes.FieldsFunc(b, func(r rune) bool { return r == '\r' || r == '\n' })
}

// FuzzScrubLine: no piece of a scrubbed line is a passive reply, a line
// without one passes unchanged, and the result is one line.
func FuzzScrubLine(f *testing.F) {
	for _, s := range []string{
		"200 ok\r227 Entering Passive Mode (10,9,8,7,19,137).\r\n",
		"227 (10,9,8,7,19,137)\r\n",
		" 229 (|||2121|)\r\n",
		"211-x\r229 (|||2121|)\r200 y\r\n",
		"226 Transfer complete, 227 bytes.\r\n",
		"250 ok\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1] // one line, as the line reader gives it
		}
		out := scrubLine(line)
		hidden := false
		for _, p := range pieces(line) {
			hidden = hidden || passivePiece(p)
		}
		if !hidden && !bytes.Equal(out, line) {
			t.Fatalf("%q changed to %q without a passive reply in it", line, out)
		}
		for _, p := range pieces(out) {
			if passivePiece(p) {
				t.Fatalf("%q scrubbed to %q still holds %q", line, out, p)
			}
		}
		if i := bytes.IndexByte(out, '\n'); i >= 0 && i != len(out)-1 {
			t.Fatalf("%q scrubbed to %q, more than one line", line, out)
		}
	})
}
