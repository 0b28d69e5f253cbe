package daemon

import (
	"os"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/forward"
	"github.com/edgerelay/relay/ftppassive"
	"github.com/edgerelay/relay/udpstream"
	"github.com/edgerelay/relay/upstream"
)

// sockets are listen sockets waiting to be taken over, by protocol and
// address as the config writes it: those of the listeners a reload retires,
// or those the previous process handed over on a binary upgrade. Taking
// over instead of binding keeps the port open throughout, so no connection
// waiting in the accept queue is reset and no datagram is lost, and it needs
// no SO_REUSEPORT: relay never shares a port with another socket.
type sockets map[sockKey]*os.File

type sockKey struct {
	proto string // "tcp" or "udp"
	addr  string // a listen address of the config, "host:port"
}

// handedOver collects duplicates of the listen sockets of retiring. A
// listener that cannot duplicate its sockets is logged and skipped: its
// successor binds anew, which fails (and the reload with it) while the old
// socket is still bound.
func handedOver(retiring []*instance, log zerolog.Logger) sockets {
	socks := make(sockets)
	for _, in := range retiring {
		src, ok := in.srv.(interface{ Files() ([]*os.File, error) })
		if !ok {
			continue
		}
		files, err := src.Files()
		if err != nil {
			log.Warn().Err(err).Str("listener", in.spec.Name).Msg("cannot hand listen sockets over")
			continue
		}
		socks.add(in.spec, files)
	}
	return socks
}

// add files, one per address of spec.Listen in order.
func (s sockets) add(spec config.Listener, files []*os.File) {
	for i, f := range files {
		k := sockKey{spec.Mode.Proto(), spec.Listen[i]}
		if prev, dup := s[k]; dup {
			prev.Close()
		}
		s[k] = f
	}
}

// take returns, for each address of spec, the socket to take over (nil:
// bind) and forgets them; the caller closes them after the listener has
// taken its own duplicates.
func (s sockets) take(spec config.Listener) []*os.File {
	var files []*os.File
	for i, addr := range spec.Listen {
		k := sockKey{spec.Mode.Proto(), addr}
		if f, ok := s[k]; ok {
			if files == nil {
				files = make([]*os.File, len(spec.Listen))
			}
			files[i] = f
			delete(s, k)
		}
	}
	return files
}

// takeOne returns the socket handed over for proto and addr, or nil, and
// forgets it; the caller closes it.
func (s sockets) takeOne(proto, addr string) *os.File {
	k := sockKey{proto, addr}
	f := s[k]
	delete(s, k)
	return f
}

// close closes the sockets nobody took.
func (s sockets) close() {
	for k, f := range s {
		f.Close()
		delete(s, k)
	}
}

// replaced are the listeners a reload retires, for their successors to
// take over what is not a socket: UDP sessions, raw printer queues, the
// counts of max_conns and per_source, and the health of their upstreams,
// by listener name.
type replaced struct {
	udp []*udpstream.Relay
	tcp []*forward.Listener // tcp and raw listeners, FTP control listeners
	ups map[string]*upstream.Set
}

// replacing collects what the successors of retiring take over.
func replacing(retiring []*instance) replaced {
	r := replaced{udp: serversOf[*udpstream.Relay](retiring), tcp: serversOf[*forward.Listener](retiring),
		ups: make(map[string]*upstream.Set, len(retiring))}
	for _, p := range serversOf[*ftppassive.Proxy](retiring) {
		r.tcp = append(r.tcp, p.Control())
	}
	for _, in := range retiring {
		r.ups[in.spec.Name] = in.ups
	}
	return r
}

// serversOf returns the servers of type T among instances (the tcp and
// raw listeners, or the UDP relays), for their successors' Replaces.
func serversOf[T server](instances []*instance) []T {
	var out []T
	for _, in := range instances {
		if s, ok := in.srv.(T); ok {
			out = append(out, s)
		}
	}
	return out
}
