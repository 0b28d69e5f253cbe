package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ftpServer is a minimal passive-mode FTP server for the bench: login,
// PASV, EPSV, SIZE, RETR of files held in memory. It binds loopback only,
// for control and data alike.
type ftpServer struct {
	files map[string][]byte // path -> content; not changed after start
	srv   *tcpServer
}

func listenFTP(files map[string][]byte) (*ftpServer, error) {
	f := &ftpServer{files: files}
	srv, err := listenTCP(f.session)
	if err != nil {
		return nil, err
	}
	f.srv = srv
	return f, nil
}

func (f *ftpServer) addr() string { return f.srv.addr() }
func (f *ftpServer) close()       { f.srv.close() }

// ftpSession is one control connection's state.
type ftpSession struct {
	files map[string][]byte
	w     *bufio.Writer
	pasv  *net.TCPListener // the data port offered by the last PASV/EPSV
}

// session serves one control connection until QUIT, EOF or a minute of
// silence.
func (f *ftpServer) session(c *net.TCPConn) {
	s := &ftpSession{files: f.files, w: bufio.NewWriter(c)}
	defer s.closeData()
	r := bufio.NewReaderSize(c, 4096)
	s.reply("220 bench FTP server ready")
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return // EOF, timeout, or a line longer than the buffer
		}
		cmd, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
		if !s.command(strings.ToUpper(cmd), arg) {
			return
		}
	}
}

// command answers one command; false ends the session.
func (s *ftpSession) command(cmd, arg string) bool {
	switch cmd {
	case "USER":
		s.reply("331 any password will do")
	case "PASS":
		s.reply("230 logged in")
	case "SYST":
		s.reply("215 UNIX Type: L8")
	case "FEAT":
		s.reply("211-Features:\r\n EPSV\r\n PASV\r\n SIZE\r\n211 End")
	case "TYPE", "NOOP", "MODE", "STRU":
		s.reply("200 ok")
	case "PWD":
		s.reply(`257 "/" is the current directory`)
	case "SIZE":
		if b, ok := s.files[arg]; ok {
			s.reply(fmt.Sprintf("213 %d", len(b)))
		} else {
			s.reply("550 no such file")
		}
	case "PASV", "EPSV":
		s.passive(cmd, arg)
	case "RETR":
		s.retr(arg)
	case "QUIT":
		s.reply("221 bye")
		return false
	default:
		s.reply("502 not implemented")
	}
	return true
}

func (s *ftpSession) reply(line string) {
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	_ = s.w.Flush()
}

// passive opens a data port on loopback and announces it.
func (s *ftpSession) passive(cmd, arg string) {
	if cmd == "EPSV" && strings.EqualFold(arg, "ALL") {
		s.reply("200 EPSV ALL ok")
		return
	}
	s.closeData()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		s.reply("425 cannot open a data port")
		return
	}
	s.pasv = ln
	port := ln.Addr().(*net.TCPAddr).Port
	if cmd == "EPSV" {
		s.reply(fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", port))
		return
	}
	s.reply(fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d)", port>>8, port&0xff))
}

// retr sends a file over the data connection the client opens to the
// passive port.
func (s *ftpSession) retr(path string) {
	b, ok := s.files[path]
	if !ok {
		s.reply("550 no such file")
		return
	}
	if s.pasv == nil {
		s.reply("425 use PASV or EPSV first")
		return
	}
	s.reply("150 opening data connection for " + path + " (" + strconv.Itoa(len(b)) + " bytes)")
	_ = s.pasv.SetDeadline(time.Now().Add(10 * time.Second))
	data, err := s.pasv.AcceptTCP()
	s.closeData()
	if err != nil {
		s.reply("425 no data connection")
		return
	}
	_ = data.SetDeadline(time.Now().Add(2 * time.Minute))
	_, err = data.Write(b)
	cerr := data.Close()
	if err = errors.Join(err, cerr); err != nil {
		s.reply("426 transfer aborted")
		return
	}
	s.reply("226 transfer complete")
}

func (s *ftpSession) closeData() {
	if s.pasv != nil {
		s.pasv.Close()
		s.pasv = nil
	}
}
