package world

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inNetnsEnv is set in the environment of a test binary that RunInNetns
// started inside a network namespace.
const inNetnsEnv = "RELAY_TEST_IN_NETNS"

// RunInNetns runs the test t again, in a child test binary inside a network
// namespace made for it (loopback up, then setup: each the arguments of one
// `ip -n NS` command), and reports whether the caller is that child. The
// parent reports the child's failure as its own and removes the namespace
// when the test ends. Where no namespace can be made (not root, no ip) it
// skips t. t must be a top-level test: the child runs ^Name$.
//
// A namespace of its own lets a test build a network loopback cannot
// (a link whose hosts do not answer) without touching the machine's.
func RunInNetns(t *testing.T, setup ...[]string) bool {
	t.Helper()
	if os.Getenv(inNetnsEnv) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to make a network namespace")
	}
	ns := fmt.Sprintf("relay-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range append([][]string{{"link", "set", "lo", "up"}}, setup...) {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v: %s", ns, strings.Join(args, " "), err, out)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Errorf("in network namespace %s: %v\n%s", ns, err, out)
	} else if testing.Verbose() {
		t.Logf("in network namespace %s:\n%s", ns, out)
	}
	return false
}

// SilentLink is RunInNetns setup for a link on which nobody answers: v0
// has 10.99.0.1/24 and fd00:99::1/64, its veth peer v1 is up with no
// address, so ARP and neighbour discovery for any other address of those
// subnets (10.99.0.2, fd00:99::2) fail, as for a powered-off host on the
// LAN. Resolution gives up after one probe and giveUp, not the kernel's
// three probes a second apart, so that the host unreachable comes as soon
// as a test needs it.
func SilentLink(giveUp time.Duration) [][]string {
	ms := strconv.FormatInt(giveUp.Milliseconds(), 10)
	return [][]string{
		{"link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		{"link", "set", "v0", "up"},
		{"link", "set", "v1", "up"},
		{"addr", "add", "10.99.0.1/24", "dev", "v0"},
		{"-6", "addr", "add", "fd00:99::1/64", "dev", "v0", "nodad"},
		{"ntable", "change", "name", "arp_cache", "dev", "v0", "retrans", ms, "mcast_probes", "1"},
		{"ntable", "change", "name", "ndisc_cache", "dev", "v0", "retrans", ms, "mcast_probes", "1"},
	}
}

// NeedIPv6Loopback skips the test where ::1 cannot be listened on (a
// kernel or container without IPv6).
func NeedIPv6Loopback(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
}
