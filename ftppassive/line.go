package ftppassive

import (
	"bytes"
	"errors"
	"io"
)

// maxLine bounds one control-channel line, terminator included. RFC 959
// sets no limit; real lines are a verb plus a path (PATH_MAX is 4096), so
// 8 KiB is generous and a peer cannot make a session grow past it.
const maxLine = 8 << 10

// maxReplyLines bounds a multi-line reply the relay holds back to rewrite
// (a 227/229 or a reply to a command it must inspect). Replies it does not
// touch stream through line by line and are not bounded in length.
const maxReplyLines = 64

var errLineTooLong = errors.New("ftppassive: control line longer than the limit")

// lineReader frames a control-channel byte stream into lines ending in LF
// (CRLF on the wire, a bare LF accepted). It owns one fixed buffer of
// maxLine bytes and never allocates after construction. A returned line
// aliases the buffer and is valid until the next call.
//
// A read error (a deadline, say) leaves the partial line in the buffer, so
// the caller may extend the deadline and call again.
type lineReader struct {
	r          io.Reader
	buf        []byte
	start, end int // buf[start:end] is read but not yet returned
	err        error
}

func newLineReader(r io.Reader, size int) *lineReader {
	return &lineReader{r: r, buf: make([]byte, size)}
}

// readLine returns the next line including its terminator. At EOF a final
// unterminated fragment is returned as a line, then io.EOF.
func (lr *lineReader) readLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(lr.buf[lr.start:lr.end], '\n'); i >= 0 {
			line := lr.buf[lr.start : lr.start+i+1]
			lr.start += i + 1
			return line, nil
		}
		if lr.err != nil {
			if lr.start < lr.end {
				line := lr.buf[lr.start:lr.end]
				lr.start = lr.end
				return line, nil
			}
			return nil, lr.err
		}
		if lr.end-lr.start == len(lr.buf) {
			return nil, errLineTooLong
		}
		if lr.start > 0 {
			lr.end = copy(lr.buf, lr.buf[lr.start:lr.end])
			lr.start = 0
		}
		n, err := lr.r.Read(lr.buf[lr.end:])
		lr.end += n
		if err != nil {
			if err != io.EOF {
				// Not sticky: a deadline error may be retried.
				if n == 0 {
					return nil, err
				}
				continue
			}
			lr.err = err
		}
	}
}

// buffered returns the bytes read but not yet returned as lines and empties
// the buffer; used when the channel turns opaque after AUTH TLS.
func (lr *lineReader) buffered() []byte {
	b := lr.buf[lr.start:lr.end]
	lr.start, lr.end = 0, 0
	return b
}

// replyFramer follows the reply structure of the server's side of the
// control channel (RFC 959 4.2): "ddd text" is a complete reply, "ddd-"
// opens a multi-line reply that ends at the first line starting "ddd ".
type replyFramer struct {
	code  int // code of the open multi-line reply; 0 when none is open
	lines int // lines seen in the current reply
}

// line classifies one server line. code is the reply's code (0 for a line
// that is not part of any reply, such as garbage between replies), first
// says the line opens a reply, done says it completes one.
func (f *replyFramer) line(l []byte) (code int, first, done bool) {
	if f.code != 0 {
		f.lines++
		c, multi, ok := parseReplyCode(l)
		if ok && !multi && c == f.code {
			code, f.code = f.code, 0
			return code, false, true
		}
		return f.code, false, false
	}
	c, multi, ok := parseReplyCode(l)
	if !ok {
		return 0, true, true
	}
	f.lines = 1
	if multi {
		f.code = c
		return c, true, false
	}
	return c, true, true
}
