package ftppassive

import (
	"errors"
	"net/netip"
	"strings"
)

// cmdKind says what the reply loop must do with the reply to a command.
type cmdKind uint8

const (
	kindPlain   cmdKind = iota // the reply passes through unchanged
	kindPassive                // PASV/EPSV: the 227/229 is rewritten
	kindActive                 // PORT/EPRT: rewritten toward the server
	kindLocal                  // answered by the relay; never sent to the server
	kindAuth                   // AUTH: a 234 turns the channel opaque
)

// pending is one FIFO entry: a command whose reply has not come back.
type pending struct {
	kind     cmdKind
	epsv     bool      // passive: the client asked EPSV (answer 229), else PASV (227)
	sentEPSV bool      // passive: the relay asked the server EPSV, else PASV
	reply    string    // local: the relay's answer, sent in turn
	data     *dataConn // active: the port the server will connect to
	// xfer is the active-mode port of a transfer command (RETR, LIST…):
	// its replies wait for the relay's connection to the client.
	xfer *dataConn
	// xferFailed: that connection failed; answered: the client already
	// has its final reply (a 425 for the 150), so the server's is dropped.
	xferFailed, answered bool
	// done, if set, receives the outcome when the final reply has been
	// written; the command loop waits on it before reading further, so
	// nothing is sent to the server behind this command. true: the channel
	// is now opaque.
	done chan bool
}

// handleCommand relays one client line. The returned channel, if not nil,
// must be waited on before the next line (see pending.done).
func (s *session) handleCommand(line []byte) (chan bool, error) {
	cmd := parseCommand(line)
	switch cmd.verb {
	case "PASV":
		return s.passive(cmd, false)
	case "EPSV":
		if strings.EqualFold(cmd.arg, "ALL") {
			// The relay owns the server side of every data connection, so
			// EPSV ALL is the relay's promise alone; the server need not know.
			s.mu.Lock()
			s.epsvAll = true
			s.mu.Unlock()
			return nil, s.answer("200 EPSV ALL ok; only EPSV from now on.\r\n")
		}
		return s.passive(cmd, true)
	case "PORT", "EPRT":
		return nil, s.active(cmd)
	case "LPSV", "LPRT":
		// RFC 1639 long addresses: the relay does not rewrite them, and
		// passing them through would let data bypass it.
		return nil, s.answer("502 " + cmd.verb + " not implemented; use EPSV or EPRT.\r\n")
	case "AUTH":
		e := &pending{kind: kindAuth, done: make(chan bool, 1)}
		return e.done, s.send(e, line)
	case "RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD":
		e := &pending{kind: kindPlain}
		s.mu.Lock()
		e.xfer, s.armed = s.armed, nil
		s.mu.Unlock()
		return nil, s.send(e, line)
	}
	return nil, s.send(&pending{kind: kindPlain}, line)
}

// passive relays PASV or EPSV. The server is asked PASV when the client
// asked PASV, or EPSV when it is known to refuse it; EPSV otherwise (and
// always over IPv6, where PASV cannot work).
func (s *session) passive(cmd command, epsv bool) (chan bool, error) {
	s.mu.Lock()
	epsvAll, support := s.epsvAll, s.epsv
	s.mu.Unlock()
	if !epsv && epsvAll {
		return nil, s.answer("503 PASV not allowed after EPSV ALL.\r\n")
	}
	if epsv && cmd.arg != "" && cmd.arg != s.family() {
		return nil, s.answer("522 Network protocol not supported, use (" + s.family() + ").\r\n")
	}
	if !epsv && !s.advertised().Is4() {
		return nil, s.answer("500 PASV cannot carry an IPv6 address; use EPSV.\r\n")
	}
	serverV6 := s.serverAddr.Addr().Is6()
	e := &pending{kind: kindPassive, epsv: epsv}
	e.sentEPSV = serverV6 || (epsv && support != epsvRefused)
	if e.sentEPSV && !serverV6 && support == epsvUnknown {
		// If the server refuses EPSV the relay asks PASV instead; holding
		// later commands back keeps that retry in order.
		e.done = make(chan bool, 1)
	}
	line := "PASV\r\n"
	if e.sentEPSV {
		line = "EPSV\r\n"
	}
	return e.done, s.send(e, []byte(line))
}

// active checks a PORT/EPRT against RFC 2577, opens a relay port on the
// server-facing side and sends the server the relay's own PORT/EPRT.
func (s *session) active(cmd command) error {
	s.mu.Lock()
	epsvAll := s.epsvAll
	s.mu.Unlock()
	if epsvAll {
		return s.answer("503 " + cmd.verb + " not allowed after EPSV ALL.\r\n")
	}
	var target netip.AddrPort
	var err error
	if cmd.verb == "PORT" {
		target, err = parsePORT(cmd.arg)
	} else {
		target, err = parseEPRT(cmd.arg)
	}
	switch {
	case errors.Is(err, errEPRTProto):
		return s.answer("522 Network protocol not supported, use (" + s.family() + ").\r\n")
	case err != nil:
		return s.answer("501 Syntax error in " + cmd.verb + " parameters.\r\n")
	case target.Addr().Unmap() != s.clientAddr.Addr():
		s.p.stats.BouncesRefused.Add(1)
		s.log.Warn().Str("verb", cmd.verb).Str("target", target.String()).
			Msg("active-mode data address is not the client's; refused (RFC 2577)")
		return s.answer("500 Illegal " + cmd.verb + " command: the address must be your own.\r\n")
	case target.Port() < 1024:
		s.p.stats.BouncesRefused.Add(1)
		s.log.Warn().Str("verb", cmd.verb).Str("target", target.String()).
			Msg("active-mode data port below 1024; refused (RFC 2577)")
		return s.answer("504 Command not implemented for that parameter: port below 1024.\r\n")
	}
	d, err := s.openData(s.serverLocal, s.serverAddr.Addr(), target, false)
	if err != nil {
		s.log.Warn().Err(err).Msg("no data port for active mode; answered 425")
		return s.answer("425 Can't open data connection: " + reason425(err) + ".\r\n")
	}
	var line string
	if d.addr().Addr().Is4() {
		line = formatPORT(d.addr())
	} else {
		line = formatEPRT(d.addr())
	}
	return s.send(&pending{kind: kindActive, data: d}, []byte(line))
}

// family is the EPSV/EPRT network protocol number of the client's side.
func (s *session) family() string {
	if s.clientLocal.Is4() {
		return "1"
	}
	return "2"
}

// advertised is the address the client is told to connect to.
func (s *session) advertised() netip.Addr {
	if s.p.cfg.PublicIP.IsValid() {
		return s.p.cfg.PublicIP.Unmap()
	}
	return s.clientLocal
}

// send appends e to the FIFO and writes line to the server, in that order,
// so the reply cannot come back before its entry.
func (s *session) send(e *pending, line []byte) error {
	if err := s.takeSlot(); err != nil {
		return err
	}
	s.mu.Lock()
	s.fifo = append(s.fifo, e)
	s.mu.Unlock()
	_, err := s.writeServer(line)
	return err
}

// answer replies to the client on the relay's own behalf, in turn: after
// the greeting and the replies to every command sent before.
func (s *session) answer(reply string) error {
	if err := s.takeSlot(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if len(s.fifo) > 0 || s.midReply || !s.greeted {
		s.fifo = append(s.fifo, &pending{kind: kindLocal, reply: reply})
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	<-s.slots
	return s.writeClient([]byte(reply))
}

var errSessionEnded = errors.New("ftppassive: session ended")

// takeSlot waits for room in the FIFO.
func (s *session) takeSlot() error {
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-s.dead:
		return errSessionEnded
	}
}

func reason425(err error) string {
	if errors.Is(err, errNoDataPort) {
		return "no free data port"
	}
	return "the relay could not open a data port"
}
