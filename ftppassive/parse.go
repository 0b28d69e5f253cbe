package ftppassive

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The parsers in this file are pure: text in, values out, no I/O. They are
// the only place that reads peer-supplied addresses, so they validate
// everything (octets <= 255, port 1-65535) and never panic on any input;
// fuzz_test.go holds them to that and to parse(format(x)) == x.

var (
	errNoHostPort  = errors.New("ftppassive: no h1,h2,h3,h4,p1,p2 in reply")
	errBadHostPort = errors.New("ftppassive: malformed h1,h2,h3,h4,p1,p2")
	errNoEPSVPort  = errors.New("ftppassive: no (|||port|) in reply")
	errBadEPRT     = errors.New("ftppassive: malformed EPRT argument")
	errEPRTProto   = errors.New("ftppassive: EPRT network protocol not supported")
)

// Telnet bytes that may appear on the control channel (RFC 854). ABOR is
// typically preceded by IAC IP IAC DM.
const (
	telnetIAC  = 0xFF
	telnetWILL = 0xFB // WILL, WONT, DO and DONT (0xFB..0xFE) carry one option byte
	telnetSB   = 0xFA // subnegotiation begin, up to IAC SE
	telnetSE   = 0xF0
)

// command is one client line with Telnet sequences removed and the verb
// upper-cased; the raw bytes are kept by the caller for pass-through.
type command struct {
	verb string // "PASV", "EPRT", ...; "" for an empty line
	arg  string // everything after the first space, without CRLF
}

// parseCommand splits a client line into verb and argument. Telnet
// sequences (IAC x, IAC WILL/WONT/DO/DONT opt) are dropped, IAC IAC becomes
// one 0xFF byte, leading spaces are ignored.
func parseCommand(line []byte) command {
	var b strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != telnetIAC {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(line) {
			break
		}
		i++
		switch next := line[i]; {
		case next == telnetIAC:
			b.WriteByte(telnetIAC)
		case next == telnetSB:
			// A subnegotiation runs to IAC SE. Skip it whole: a server that
			// does so must not find a command in it that the relay did not
			// see (a PORT hidden from the bounce check).
			for i++; i < len(line) && !(line[i] == telnetIAC && i+1 < len(line) && line[i+1] == telnetSE); i++ {
			}
			i++ // at SE (or past the end)
		case next >= telnetWILL && next < telnetIAC:
			i++ // skip the option byte too
		}
	}
	s := strings.TrimRight(b.String(), "\r\n")
	s = strings.TrimLeft(s, " \t")
	// Servers differ on the separator; splitting at a tab too keeps
	// "PORT\th1,..." from passing as an unknown verb.
	verb, arg := s, ""
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		verb, arg = s[:i], s[i+1:]
	}
	return command{verb: strings.ToUpper(verb), arg: strings.TrimSpace(arg)}
}

// parseReplyCode reads the three-digit code at the start of a reply line
// and the byte after it: '-' opens a multi-line reply, ' ' (or the end of
// the line) is a complete one. ok is false for a line that does not start
// with a reply code.
func parseReplyCode(line []byte) (code int, multi bool, ok bool) {
	if len(line) < 3 {
		return 0, false, false
	}
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return 0, false, false
	}
	if len(line) == 3 {
		return code, false, true
	}
	switch line[3] {
	case '-':
		return code, true, true
	case ' ', '\r', '\n':
		return code, false, true
	}
	return 0, false, false
}

// parse227 finds the six numbers of a PASV reply, with or without
// parentheses ("227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)." or
// "227 =h1,h2,h3,h4,p1,p2"). The first run of six comma-separated numbers
// after the reply code wins.
func parse227(text string) (netip.AddrPort, error) {
	if len(text) >= 3 {
		if _, _, ok := parseReplyCode([]byte(text)); ok {
			text = text[3:]
		}
	}
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) || (i > 0 && isDigit(text[i-1])) {
			continue
		}
		end := i
		for end < len(text) && (isDigit(text[end]) || text[end] == ',' || text[end] == ' ') {
			end++
		}
		run := strings.TrimRight(text[i:end], ", ")
		if strings.Count(run, ",") < 5 {
			i = end
			continue
		}
		return parseHostPort(run)
	}
	return netip.AddrPort{}, errNoHostPort
}

// parsePORT parses the argument of a PORT command.
func parsePORT(arg string) (netip.AddrPort, error) {
	return parseHostPort(strings.TrimSpace(arg))
}

// parseHostPort parses "h1,h2,h3,h4,p1,p2" (spaces around numbers allowed,
// nothing after the sixth number). The port must not be zero.
func parseHostPort(s string) (netip.AddrPort, error) {
	fields := strings.Split(s, ",")
	if len(fields) != 6 {
		return netip.AddrPort{}, fmt.Errorf("%w: %d fields", errBadHostPort, len(fields))
	}
	var n [6]byte
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if f == "" || len(f) > 3 {
			return netip.AddrPort{}, errBadHostPort
		}
		v, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%w: %q out of range", errBadHostPort, f)
		}
		n[i] = byte(v)
	}
	port := uint16(n[4])<<8 | uint16(n[5])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: port 0", errBadHostPort)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(n[:4])), port), nil
}

// hostPort formats an IPv4 address and port as "h1,h2,h3,h4,p1,p2". An
// IPv4-mapped IPv6 address is written as IPv4; callers never pass others.
func hostPort(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().As4()
	p := ap.Port()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], p>>8, p&0xFF)
}

// format227 is the relay's answer to PASV.
func format227(ap netip.AddrPort) string {
	return "227 Entering Passive Mode (" + hostPort(ap) + ").\r\n"
}

// formatPORT is the PORT command the relay sends to an IPv4 server.
func formatPORT(ap netip.AddrPort) string {
	return "PORT " + hostPort(ap) + "\r\n"
}

// parse229 finds the port of an EPSV reply: "(|||port|)", where '|' may be
// any printable delimiter (RFC 2428). Servers that drop the parentheses are
// accepted as long as the three delimiters are there.
func parse229(text string) (uint16, error) {
	if len(text) >= 3 {
		if _, _, ok := parseReplyCode([]byte(text)); ok {
			text = text[3:]
		}
	}
	for i := 0; i+4 < len(text); i++ {
		d := text[i]
		if d < 33 || d > 126 || isDigit(d) || text[i+1] != d || text[i+2] != d {
			continue
		}
		j := i + 3
		for j < len(text) && isDigit(text[j]) {
			j++
		}
		if j == i+3 || j >= len(text) || text[j] != d || j-(i+3) > 5 {
			continue
		}
		v, err := strconv.ParseUint(text[i+3:j], 10, 16)
		if err != nil || v == 0 {
			return 0, fmt.Errorf("%w: port %q", errNoEPSVPort, text[i+3:j])
		}
		return uint16(v), nil
	}
	return 0, errNoEPSVPort
}

// format229 is the relay's answer to EPSV.
func format229(port uint16) string {
	return "229 Entering Extended Passive Mode (|||" + strconv.Itoa(int(port)) + "|)\r\n"
}

// parseEPRT parses the argument of an EPRT command: "<d>proto<d>addr<d>port<d>"
// with proto 1 (IPv4) or 2 (IPv6). Zones are refused: a peer has no
// business naming our interfaces. errEPRTProto means a well-formed request
// for another network protocol (answered with 522).
func parseEPRT(arg string) (netip.AddrPort, error) {
	arg = strings.TrimSpace(arg)
	if len(arg) < 2 {
		return netip.AddrPort{}, errBadEPRT
	}
	d := arg[0]
	if d < 33 || d > 126 || arg[len(arg)-1] != d {
		return netip.AddrPort{}, errBadEPRT
	}
	fields := strings.Split(arg[1:len(arg)-1], string(d))
	if len(fields) != 3 {
		return netip.AddrPort{}, errBadEPRT
	}
	proto, host, portText := fields[0], fields[1], fields[2]
	if proto != "1" && proto != "2" {
		return netip.AddrPort{}, errEPRTProto
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || addr.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: address %q", errBadEPRT, host)
	}
	if (proto == "1") != addr.Is4() {
		return netip.AddrPort{}, fmt.Errorf("%w: address %q is not protocol %s", errBadEPRT, host, proto)
	}
	if len(portText) > 5 || portText == "" {
		return netip.AddrPort{}, fmt.Errorf("%w: port %q", errBadEPRT, portText)
	}
	for i := 0; i < len(portText); i++ {
		if !isDigit(portText[i]) {
			return netip.AddrPort{}, fmt.Errorf("%w: port %q", errBadEPRT, portText)
		}
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: port %q", errBadEPRT, portText)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// formatEPRT is the EPRT command the relay sends to an IPv6 server (and the
// inverse of parseEPRT for any address without a zone).
func formatEPRT(ap netip.AddrPort) string {
	proto := "2"
	if ap.Addr().Is4() {
		proto = "1"
	}
	return "EPRT |" + proto + "|" + ap.Addr().String() + "|" + strconv.Itoa(int(ap.Port())) + "|\r\n"
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
