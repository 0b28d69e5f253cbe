package config

import (
	"fmt"
	"strings"
)

// wantTextError is the decoder's error for a value that is not text where
// a key takes text.
type wantTextError struct{ got any }

func (e *wantTextError) Error() string { return "want text, got " + describeValue(e.got) }

// textHint says what to write in place of the number got at path, for the
// keys where a bare number is a likely slip (a port alone for an address,
// one data port, a PROXY protocol version without its v); "" for other keys
// and values.
func textHint(path string, got any) string {
	n, ok := got.(int)
	if !ok {
		return ""
	}
	key := path[strings.LastIndex(path, ".")+1:]
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i] // upstream[1]
	}
	switch key {
	case "listen":
		return fmt.Sprintf(`: write "0.0.0.0:%d" for every address, or "IP:%d"`, n, n)
	case "upstream":
		return fmt.Sprintf(`: write "HOST:%d"`, n)
	case "data_ports":
		return fmt.Sprintf(`: write a range like "%d-%d" (or one port in quotes, "%d")`, n, n+99, n)
	case "proxy_protocol":
		return fmt.Sprintf(": write v%d", n)
	}
	return ""
}
