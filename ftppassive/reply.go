package ftppassive

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"time"
)

// replyLoop relays server replies to the client until the server's side
// ends or the channel turns opaque. It closes s.dead when it returns.
func (s *session) replyLoop(sr *lineReader) {
	defer close(s.dead)
	var framer replyFramer
	var held [][]byte // lines of a reply held back to be rewritten (copies)
	var head *pending // the command the current reply answers; nil: none
	hold := false
	for {
		line, err := s.readLine(sr, s.server)
		if err != nil {
			s.endReplies(err)
			return
		}
		code, first, done := framer.line(line)
		if first {
			head, hold = s.startReply(code)
			if head != nil && head.xfer != nil && !head.xferFailed && s.awaitTransfer(head.xfer, code) {
				head.xferFailed = true
			}
			hold = hold || (head != nil && head.xferFailed)
		}
		if hold {
			if len(held) == maxReplyLines {
				s.endReplies(errLineTooLong)
				return
			}
			held = append(held, bytes.Clone(line))
		} else if err := s.relayLine(line); err != nil {
			s.endReplies(err)
			return
		}
		if !done {
			continue
		}
		opaque, err := s.finishReply(code, head, held, hold, sr)
		held = held[:0]
		if err != nil {
			s.endReplies(err)
			return
		}
		if opaque {
			return
		}
	}
}

// startReply decides, on a reply's first line, whether it must be held
// back: a 227/229 is always rewritten (a server address must never reach
// the client), and the answer to a PASV/EPSV may need the EPSV retry.
// The head is taken now, not when the reply ends: a command sent while an
// unsolicited reply streams must not be credited with it.
func (s *session) startReply(code int) (head *pending, hold bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The greeting answers no command, even when the client has sent
	// some already (a client may pipeline before it is greeted).
	if s.greeted && len(s.fifo) > 0 && s.fifo[0].kind != kindLocal {
		head = s.fifo[0]
	}
	// A reply while no command is outstanding (the greeting, a 421 before
	// closing) belongs to nobody; local answers wait until it is complete.
	s.midReply = head == nil
	return head, code == 227 || code == 229 || (head != nil && head.kind == kindPassive)
}

func (s *session) relayLine(line []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeClient(scrubLine(line))
}

// finishReply runs when a reply is complete: it writes the held reply (or
// its rewrite), pops the command the reply answered if it was final, and
// then writes the relay's own answers queued behind that command.
func (s *session) finishReply(code int, head *pending, held [][]byte, hold bool, sr *lineReader) (opaque bool, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.midReply = false
	if head == nil && code >= 200 {
		s.greeted = true // a 120 "ready in n minutes" is not the greeting yet
	}
	s.mu.Unlock()

	if hold {
		out, opened, retried, err := s.rewrite(code, head, held)
		if err != nil || retried {
			return false, err
		}
		err = s.writeClient(out)
		if opened != nil {
			opened.startDial()
		}
		if err != nil {
			return false, err
		}
	}
	final := code >= 200
	if head != nil && final {
		if head.kind == kindActive && code >= 300 {
			head.data.ln.Close() // the server refused our PORT/EPRT
		}
		opaque = head.kind == kindAuth && code == 234
		if opaque {
			// Whatever the server sent after the 234 is already TLS.
			if b := sr.buffered(); len(b) > 0 {
				if err := s.writeClient(b); err != nil {
					return false, err
				}
			}
		}
		s.pop()
		if head.done != nil {
			head.done <- opaque
		}
	}
	if opaque {
		return true, nil
	}
	return false, s.writeLocalAnswersLocked()
}

// pop removes the FIFO head and frees its slot.
func (s *session) pop() {
	s.mu.Lock()
	s.fifo[0] = nil
	s.fifo = s.fifo[1:]
	s.mu.Unlock()
	<-s.slots
}

// writeLocalAnswersLocked writes the relay's answers now at the head of the
// FIFO. The caller holds wmu.
func (s *session) writeLocalAnswersLocked() error {
	for {
		s.mu.Lock()
		if len(s.fifo) == 0 || s.fifo[0].kind != kindLocal {
			s.mu.Unlock()
			return nil
		}
		reply := s.fifo[0].reply
		s.mu.Unlock()
		s.pop()
		if err := s.writeClient([]byte(reply)); err != nil {
			return err
		}
	}
}

// rewrite turns a held reply into what the client gets. opened is the
// passive data port the reply announces, if any. retried means the server
// refused EPSV and has been asked PASV: the client gets nothing yet.
func (s *session) rewrite(code int, head *pending, held [][]byte) (out []byte, opened *dataConn, retried bool, err error) {
	if head != nil && head.xferFailed {
		return failedTransferReply(code, head, held), nil, false, nil
	}
	passive := head != nil && head.kind == kindPassive
	switch code {
	case 227, 229:
		epsv := code == 229
		if passive {
			epsv = head.epsv
			if head.sentEPSV && code == 229 {
				s.mu.Lock()
				s.epsv = epsvWorks
				s.mu.Unlock()
			}
		}
		target, err := parsePassiveReply(code, held)
		if err != nil {
			s.p.stats.DataFailed.Add(1)
			s.log.Warn().Err(err).Bytes("reply", held[0]).Msg("server's passive reply not understood; answered 425")
			return []byte("425 Can't open data connection: the server's reply was not understood.\r\n"), nil, false, nil
		}
		out, opened = s.openPassive(target, epsv)
		return out, opened, false, nil
	case 500, 501, 502, 504, 522:
		// Only an EPSV sent while support was unknown is retried: the
		// command loop holds the client's next commands back for it
		// (head.done), so the PASV is the next thing the server reads.
		// Otherwise later commands are on the wire already, and the
		// refusal goes to the client as it is.
		if passive && head.sentEPSV && head.done != nil && !s.serverAddr.Addr().Is6() {
			s.mu.Lock()
			s.epsv = epsvRefused
			s.mu.Unlock()
			head.sentEPSV = false
			s.log.Debug().Int("code", code).Msg("server refused EPSV; asking PASV")
			if _, err := s.writeServer([]byte("PASV\r\n")); err != nil {
				return nil, nil, false, err
			}
			return nil, nil, true, nil
		}
	}
	return scrubLines(held), nil, false, nil
}

// awaitTransfer holds a reply to an active-mode transfer command until the
// relay's connection to the client's data port is up, and reports whether
// it failed. Direct, the server's connection to the client is complete
// before it sends data or its 226; through the relay the client would
// otherwise see the 226 while it still waits for its connection, give the
// file up and close its port (curl does).
//
// A 1xx or 2xx says the server connects (or did): wait for it, a
// connect timeout at most, then for the dial to the client, which has its
// own timeout. A 4xx/5xx waits only if the server had connected: a
// refusal (550 no such file) must not be delayed.
func (s *session) awaitTransfer(d *dataConn, code int) (failed bool) {
	if code >= 300 {
		select {
		case <-d.accepted:
		default:
			return false
		}
	}
	t := time.NewTimer(s.p.cfg.connectTimeout())
	defer t.Stop()
	select {
	case <-d.accepted:
	case <-d.settled: // (clientErr is nil if the port closed unused)
		return d.clientErr != nil
	case <-t.C:
		return false // the reply goes on; a later one may wait again
	case <-s.ctx.Done():
		return false
	}
	select {
	case <-d.settled:
		return d.clientErr != nil
	case <-s.ctx.Done():
		return false
	}
}

// failedTransferReply is what the client gets for the server's reply to a
// transfer whose connection to the client failed: the 1xx becomes a 425
// (the client stops waiting for a connection), the server's final reply
// after it is dropped, a 2xx without a 1xx before it becomes a 426.
func failedTransferReply(code int, head *pending, held [][]byte) []byte {
	switch {
	case head.answered:
		return nil
	case code < 200:
		head.answered = true
		return []byte("425 Can't open data connection: the relay could not connect to your data port.\r\n")
	case code < 300:
		return []byte("426 Connection closed; transfer aborted: the relay could not connect to your data port.\r\n")
	}
	return scrubLines(held)
}

// parsePassiveReply finds the server's data address in a 227 or 229 reply,
// trying each line of a multi-line reply. A 229 carries only a port; its
// address is left invalid.
func parsePassiveReply(code int, held [][]byte) (netip.AddrPort, error) {
	var err error
	for _, l := range held {
		if code == 227 {
			var ap netip.AddrPort
			if ap, err = parse227(string(l)); err == nil {
				return ap, nil
			}
			continue
		}
		var port uint16
		if port, err = parse229(string(l)); err == nil {
			return netip.AddrPortFrom(netip.Addr{}, port), nil
		}
	}
	return netip.AddrPort{}, err
}

// openPassive opens a relay data port for the server's data address and
// returns the client's 227/229 and the port (or a 425 and nil).
func (s *session) openPassive(server netip.AddrPort, epsv bool) ([]byte, *dataConn) {
	if server.Port() < 1024 {
		// A server naming its own SMTP port (say) would have the relay
		// hand the client that service's banner: RFC 2577 for passive.
		s.p.stats.PassivePortsRefused.Add(1)
		s.p.stats.DataFailed.Add(1)
		s.log.Warn().Uint16("port", server.Port()).
			Msg("server's passive reply names a data port below 1024; refused, answered 425")
		return []byte("425 Can't open data connection: the server named a port below 1024.\r\n"), nil
	}
	target := server
	if !s.p.cfg.TrustServerIP || !server.Addr().IsValid() {
		target = netip.AddrPortFrom(s.serverAddr.Addr(), server.Port())
	}
	adv := s.advertised()
	if !epsv && !adv.Is4() {
		return []byte("425 Can't open data connection: PASV cannot carry an IPv6 address; use EPSV.\r\n"), nil
	}
	d, err := s.openData(s.clientLocal, s.clientAddr.Addr(), target, true)
	if err != nil {
		s.log.Warn().Err(err).Msg("no data port for passive mode; answered 425")
		return []byte("425 Can't open data connection: " + reason425(err) + ".\r\n"), nil
	}
	if epsv {
		return []byte(format229(d.local.Port())), d
	}
	return []byte(format227(netip.AddrPortFrom(adv, d.local.Port()))), d
}

// endReplies handles the end of the server's side. The client is not
// closed here: abort sends FIN and the command loop, which reads the
// client, closes it once the client has hung up or the grace is over.
func (s *session) endReplies(err error) {
	switch {
	case err == io.EOF:
		s.setReason("server_closed")
		s.abort("")
	case errors.Is(err, errLineTooLong):
		s.p.stats.LinesTooLong.Add(1)
		s.log.Warn().Int("limit", maxLine).Msg("server sent a reply line (or multi-line reply) longer than the limit; session closed")
		s.setReason("server_line_too_long")
		s.abort("421 Server reply too long; closing control connection.\r\n")
	case errors.Is(err, errIdle):
		s.setReason("idle")
		s.abort("421 Idle timeout; closing control connection.\r\n")
	default:
		s.setReason("server_error")
		s.abort("")
	}
}
