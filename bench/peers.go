package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// peerNames is the column order of the peers in the table.
func peerNames() []string { return []string{"haproxy", "nginx", "socat", "rinetd", "stunnel4"} }

// noTunnel is why a plain forwarder sits the tunnel scenario out.
const noTunnel = "no TLS tunnel (stunnel4 is the peer for it)"

// lookBin finds a program in PATH or in the sbin directories, which are not
// in every user's PATH.
func lookBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// peer is a peer program found on this machine, or why it is missing.
type peer struct {
	fwd     forwarder // nil when missing
	missing string
	version string
}

// findPeers looks for the peers named in want (all of them when want is
// empty).
func findPeers(want map[string]bool) map[string]peer {
	found := map[string]peer{}
	for _, name := range peerNames() {
		if len(want) > 0 && !want[name] {
			continue
		}
		bin := lookBin(name)
		if bin == "" {
			found[name] = peer{missing: "not installed (make peers)"}
			continue
		}
		var pr peer
		switch name {
		case "haproxy":
			pr = peer{fwd: haproxy{bin: bin}, version: firstLine(bin, "-v")}
		case "nginx":
			pr = peer{fwd: nginx{bin: bin}, version: firstLine(bin, "-v")}
			if !nginxHasStream(bin) {
				pr = peer{missing: "stream module missing (apt-get install libnginx-mod-stream)"}
			}
		case "socat":
			pr = peer{fwd: socat{bin: bin}, version: socatVersion(bin)}
		case "rinetd":
			pr = peer{fwd: rinetd{bin: bin}, version: firstLine(bin, "-v")}
		case "stunnel4":
			pr = peer{fwd: stunnel{bin: bin}, version: stunnelVersion(bin)}
		}
		found[name] = pr
	}
	return found
}

// nginxHasStream reports whether nginx can load or has built in the stream
// module.
func nginxHasStream(bin string) bool {
	if _, err := os.Stat(nginxStreamModule); err == nil {
		return true
	}
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	return bytes.Contains(out, []byte("--with-stream ")) || bytes.HasSuffix(bytes.TrimSpace(out), []byte("--with-stream"))
}

// firstLine runs bin with args and returns the first line it printed.
func firstLine(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// socatVersion picks the "socat version" line out of socat -V.
func socatVersion(bin string) string {
	out, _ := exec.Command(bin, "-V").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "socat version") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
