// Package handoff carries listen sockets from a running relay to the new
// process that replaces it on a binary upgrade, over a Unix socket pair with
// SCM_RIGHTS, and carries back the one answer the old process waits for:
// ready, or why not. Its main types are Socket and Conn. It knows nothing
// of listeners or configs: the daemon decides which sockets to send and what
// to do with them; handoff only moves them and their names.
package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Socket is a listen socket and the name it is taken over by.
type Socket struct {
	Proto string   `json:"proto"` // "tcp", "udp", or what else the daemon names ("admin", "ftp-data")
	Addr  string   `json:"addr"`  // the listen address as the config writes it
	File  *os.File `json:"-"`
}

// batch bounds the descriptors per message, under the kernel's SCM_MAX_FD
// (253), so a long UDP port range goes in several messages.
const batch = 200

// maxMessage bounds one message's JSON: 200 names of at most a few dozen
// bytes each, with room to spare.
const maxMessage = 64 << 10

// message is one datagram of the protocol. The old process sends Sockets
// (with their descriptors, in order) until More is false; the new one then
// answers Ready or Error.
type message struct {
	Sockets []Socket `json:"sockets,omitempty"`
	More    bool     `json:"more,omitempty"`
	Ready   bool     `json:"ready,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// ErrNoAnswer: the new process closed its end without saying ready.
var ErrNoAnswer = errors.New("handoff: the new process closed the channel without an answer")

// Conn is one end of the channel.
type Conn struct {
	c *net.UnixConn
}

// Pair returns the old process's end and the file to pass to the new one
// (as one of exec.Cmd.ExtraFiles; close it in the old process once the new
// one has started). The pair is SOCK_SEQPACKET, so message boundaries and
// the descriptors that go with each message stay together.
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "handoff")
	defer mine.Close()
	c, err := FromFile(mine)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "handoff-peer"), nil
}

// FromFile wraps an end of the pair the new process inherited; f can be
// closed afterwards.
func FromFile(f *os.File) (*Conn, error) {
	fc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		fc.Close()
		return nil, errors.New("handoff: not a Unix socket")
	}
	return &Conn{c: uc}, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

// SendSockets sends every socket with its descriptor. The caller still
// owns the files.
func (c *Conn) SendSockets(socks []Socket) error {
	for start := 0; start == 0 || start < len(socks); start += batch {
		end := min(start+batch, len(socks))
		part := socks[start:end]
		fds := make([]int, len(part))
		for i, s := range part {
			fd, err := rawFd(s.File)
			if err != nil {
				return fmt.Errorf("handoff: %s %s: %w", s.Proto, s.Addr, err)
			}
			fds[i] = fd
		}
		if err := c.send(message{Sockets: part, More: end < len(socks)}, fds); err != nil {
			return err
		}
	}
	return nil
}

// rawFd reads f's descriptor without Fd, which would switch a socket's
// shared description to blocking mode under whoever still uses it. f stays
// open until the send, so the number stays valid.
func rawFd(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	err = rc.Control(func(s uintptr) { fd = int(s) })
	return fd, err
}

// ReceiveSockets reads what SendSockets sent. The caller owns the files.
func (c *Conn) ReceiveSockets() ([]Socket, error) {
	var out []Socket
	for {
		m, files, err := c.receive()
		if err != nil {
			closeAll(files)
			closeSockets(out)
			return nil, err
		}
		if len(files) != len(m.Sockets) {
			closeAll(files)
			closeSockets(out)
			return nil, fmt.Errorf("handoff: %d descriptors for %d sockets", len(files), len(m.Sockets))
		}
		for i := range m.Sockets {
			m.Sockets[i].File = files[i]
		}
		out = append(out, m.Sockets...)
		if !m.More {
			return out, nil
		}
	}
}

// Ready tells the old process that the new one serves.
func (c *Conn) Ready() error { return c.send(message{Ready: true}, nil) }

// Fail tells the old process why the new one will not serve.
func (c *Conn) Fail(reason error) error { return c.send(message{Error: reason.Error()}, nil) }

// Answer waits for Ready (nil) or Fail (its reason). Close the Conn to
// stop waiting.
func (c *Conn) Answer() error {
	m, files, err := c.receive()
	closeAll(files)
	switch {
	case err != nil:
		return err
	case m.Error != "":
		return errors.New(m.Error)
	case !m.Ready:
		return errors.New("handoff: unexpected message from the new process")
	}
	return nil
}

func (c *Conn) send(m message, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("handoff: send: %w", err)
	}
	return nil
}

// receive reads one message and the descriptors that came with it.
func (c *Conn) receive() (message, []*os.File, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(batch*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if errors.Is(err, io.EOF) {
		return message{}, nil, ErrNoAnswer
	}
	if err != nil {
		return message{}, nil, fmt.Errorf("handoff: receive: %w", err)
	}
	files, ferr := parseRights(oob[:oobn])
	if n == 0 {
		return message{}, files, ErrNoAnswer
	}
	if ferr != nil {
		return message{}, files, ferr
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return message{}, files, errors.New("handoff: message truncated")
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return message{}, files, fmt.Errorf("handoff: bad message: %w", err)
	}
	return m, files, nil
}

// parseRights turns SCM_RIGHTS control messages into files (close-on-exec,
// as Go opens everything).
func parseRights(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handoff: control message: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "inherited"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func closeSockets(socks []Socket) {
	for _, s := range socks {
		s.File.Close()
	}
}
