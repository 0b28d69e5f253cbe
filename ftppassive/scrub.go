package ftppassive

import "bytes"

// A hostile or broken server can hide a passive reply from a relay that
// reads replies line by line: behind a bare CR (some clients end lines
// there), or as a line nested in a multi-line reply of another code (a
// client that pipelines PASV may take it for its answer). Such a reply
// would send the client to the server's own data address, around the
// relay. scrubLine removes every such piece from the lines the relay
// passes on; the 227/229 replies it rewrites never pass through here.
//
// Like the parsers, these functions are pure and fuzzed (scrub_test.go).

// removedLine replaces a whole line that was a hidden passive reply. It
// starts with a space, so it is text within a multi-line reply and no
// reply of its own.
const removedLine = " (the relay removed a line that named the server's data address)\r\n"

// passivePiece reports whether p, a line or a piece of one, would be taken
// for a passive reply by a lenient client: after leading blanks, 227 or
// 229 and then an address (227) or a port (229) the parsers accept.
func passivePiece(p []byte) bool {
	p = bytes.TrimLeft(p, " \t")
	if len(p) < 3 {
		return false
	}
	switch string(p[:3]) {
	case "227":
		_, err := parse227(string(p))
		return err == nil
	case "229":
		_, err := parse229(string(p))
		return err == nil
	}
	return false
}

// scrubLine returns line unchanged unless a piece of it between bare CRs
// is a passive reply. Then it keeps the pieces before that one (their bare
// CRs turned to spaces) and ends the line there; when the first piece is
// the passive reply, the whole line becomes removedLine.
func scrubLine(line []byte) []byte {
	if !bytes.Contains(line, []byte("22")) {
		return line // the common case: no 227 or 229 anywhere
	}
	body := bytes.TrimSuffix(line, []byte("\n"))
	body = bytes.TrimSuffix(body, []byte("\r"))
	for i, rest := 0, body; ; i++ {
		piece, after, more := bytes.Cut(rest, []byte("\r"))
		if passivePiece(piece) {
			if i == 0 {
				return []byte(removedLine)
			}
			kept := bytes.ReplaceAll(body[:len(body)-len(rest)-1], []byte("\r"), []byte(" "))
			return append(kept, "\r\n"...)
		}
		if !more {
			return line
		}
		rest = after
	}
}

// scrubLines applies scrubLine to every line of a reply held back.
func scrubLines(held [][]byte) []byte {
	var out []byte
	for _, l := range held {
		out = append(out, scrubLine(l)...)
	}
	return out
}
