package daemon

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// holder names the process holding addr, which this relay could not bind
// (EADDRINUSE), as "pid 1234 (relay)", or "" when it cannot tell: the
// socket belongs to another user's process and /proc hides it
// (hidepid, ProtectProc=invisible), or it went away meanwhile.
func holder(proto string, addr netip.AddrPort) string {
	pids := Holders(proto, addr)
	if len(pids) == 0 {
		return ""
	}
	comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pids[0]), "comm"))
	return fmt.Sprintf("pid %d (%s)", pids[0], strings.TrimSpace(string(comm)))
}

// Holders returns the processes that hold a socket of proto bound to addr
// (listening, for TCP), in pid order, as far as /proc shows them. It reads
// /proc/net/{tcp,tcp6,udp,udp6} for the sockets' inodes, then looks for
// those among the processes' file descriptors. relay upgrade uses it to
// find the relay serving a config and to see its successor take over.
func Holders(proto string, addr netip.AddrPort) []int {
	inodes := socketInodes(proto, addr)
	if len(inodes) == 0 {
		return nil
	}
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range dirs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err == nil && inodes[link] {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
				pids = append(pids, pid)
				break
			}
		}
	}
	slices.Sort(pids)
	return pids
}

// socketInodes returns, as "socket:[N]" links, the sockets of proto bound
// to addr's port on addr or on a wildcard that covers it (or, for a
// wildcard addr, on any address). TCP sockets count only when listening.
func socketInodes(proto string, addr netip.AddrPort) map[string]bool {
	const tcpListen = "0A"
	out := make(map[string]bool)
	for _, table := range []string{proto, proto + "6"} {
		f, err := os.Open(filepath.Join("/proc/net", table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || (proto == "tcp" && fields[3] != tcpListen) {
				continue
			}
			local, ok := parseProcAddr(fields[1])
			if ok && local.Port() == addr.Port() && overlaps(local.Addr(), addr.Addr()) {
				out["socket:["+fields[9]+"]"] = true
			}
		}
		f.Close()
	}
	return out
}

// overlaps reports whether binding a and b on one port would clash.
func overlaps(a, b netip.Addr) bool {
	a, b = a.Unmap(), b.Unmap()
	return a == b || a.IsUnspecified() || b.IsUnspecified()
}

// parseProcAddr reads /proc/net's "0100007F:1F90": the address as the
// kernel's 32-bit words in host byte order, then the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	host, port, ok := strings.Cut(s, ":")
	p, err := strconv.ParseUint(port, 16, 16)
	if !ok || err != nil || (len(host) != 8 && len(host) != 32) {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(host)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a, uint16(p)), true
}
