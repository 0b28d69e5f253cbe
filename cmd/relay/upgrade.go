package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/daemon"
	"github.com/edgerelay/relay/daemon/upgradewatch"
)

// upgradeCmd is "relay upgrade": it finds the relay serving the config (the
// process holding its first TCP listen address, see watchedSocket), sends
// it SIGUSR2, and waits until another process alone holds that address,
// i.e. the new one serves and the old one stopped accepting. When the
// running relay tells it that the new process failed (package
// upgradewatch), it says why and exits 1 at once; else it exits 1 if
// nobody took over within -timeout (a relay too old to tell), and the
// running relay's log says why.
func upgradeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the new process")
	load, ok := loader(fs, args)
	if !ok {
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "relay upgrade: -timeout %s: must be above zero (it is how long to wait for the new process)\n", *timeout)
		return 2
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "relay upgrade: %v\n", err)
		return 1
	}
	proto, addr := watchedSocket(cfg)
	ap, err := listenAddrPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "relay upgrade: %s: %v\n", addr, err)
		return 1
	}
	pids := daemon.Holders(proto, ap)
	switch {
	case len(pids) == 0:
		fmt.Fprintf(stderr, "relay upgrade: no process holds %s %s, the first listen address of %s: is relay running with this config?\n",
			proto, addr, cfg.Path)
		return 1
	case len(pids) > 1:
		fmt.Fprintf(stderr, "relay upgrade: cannot tell which relay serves %s %s: pids %v hold it\n", proto, addr, pids)
		return 1
	}
	old := pids[0]
	if err := servesConfig(old, cfg.Path); err != nil {
		fmt.Fprintf(stderr, "relay upgrade: pid %d holds %s %s but %v; not signalled\n", old, proto, addr, err)
		return 1
	}
	// Listening before the signal, so the attempt it starts finds us. When
	// the name is taken (another relay upgrade waits for the same relay)
	// or cannot be bound, /proc alone tells the outcome, as before.
	watch, err := upgradewatch.Listen(old)
	if err == nil {
		defer watch.Close()
	}
	start := time.Now()
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		fmt.Fprintf(stderr, "relay upgrade: signal pid %d: %v\n", old, err)
		return 1
	}
	return awaitSuccessor(stdout, stderr, watch, proto, ap, addr, old, start, *timeout)
}

// awaitSuccessor waits until another process than old alone holds ap, the
// new one serving; it gives up when old says the new process failed (watch,
// nil when nobody can tell), when nobody holds ap (old died: an upgrade
// hands the sockets over before the old process lets go, so they are never
// unheld) or after timeout.
//
// "Nobody" takes two scans in a row: one scan lists the processes first
// and reads their descriptors after, which takes a few hundred ms on a
// busy box, so a new process started after the listing, which took over
// before the old one's descriptors were read, is missed. The next scan
// lists it. (relay upgrade said "pid N is gone" after a good upgrade in
// the first run of TestUpgradeCmdSaysWhyAtOnce, whose scans took 250-500
// ms, while the new process took over within 5 ms of its start.)
func awaitSuccessor(stdout, stderr io.Writer, watch *upgradewatch.Watcher, proto string, ap netip.AddrPort, addr string, old int, start time.Time, timeout time.Duration) int {
	unheld := 0 // scans in a row that found nobody
	for time.Since(start) < timeout {
		pids := daemon.Holders(proto, ap)
		if len(pids) == 0 {
			unheld++
		} else {
			unheld = 0
		}
		switch {
		case len(pids) == 1 && pids[0] != old:
			fmt.Fprintf(stdout, "relay upgraded: pid %d serves %s %s in place of pid %d after %v\n",
				pids[0], proto, addr, old, time.Since(start).Round(time.Millisecond))
			return 0
		case unheld == 2:
			fmt.Fprintf(stderr, "relay upgrade: nobody serves %s %s any more: pid %d is gone; its log says why\n", proto, addr, old)
			return 1
		}
		// Polling /proc, 10 ms between scans: there is no event for
		// "another process holds the address". Meanwhile, hear what old
		// says; a message that came during a scan is read now.
		if watch == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		o, ok := watch.Wait(10 * time.Millisecond)
		switch {
		case !ok:
		case o.Served:
			watch = nil // /proc shows it in a moment, with the address
		default:
			fmt.Fprintf(stderr, "relay upgrade: %s; pid %d serves on\n", failure(o), old)
			return 1
		}
	}
	fmt.Fprintf(stderr, "relay upgrade: pid %d still serves %s %s after %v; its log says why\n", old, proto, addr, timeout)
	return 1
}

// failure says which new process failed and why, as the old relay told.
// The reason is quoted only where it holds what would break the one line
// (a newline) or reach the terminal raw (an escape): it is the relay's own
// text, but it may quote a config file's.
func failure(o upgradewatch.Outcome) string {
	if o.Pid == 0 {
		return "the new process failed: " + oneLine(o.Reason)
	}
	return fmt.Sprintf("the new process (pid %d, %s) failed: %s", o.Pid, oneLine(o.Binary), oneLine(o.Reason))
}

func oneLine(s string) string {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

// watchedSocket picks the socket whose holder tells the relay serving cfg:
// the first TCP listen address (tcp, raw and ftp listeners), else the
// admin endpoint's, else the first UDP one. A TCP socket is closed by the
// old process the moment it yields; a UDP one stays with it while its open
// sessions deliver their replies (up to udp.session_timeout), so watching
// it would see the old process "still serving" long after the upgrade.
func watchedSocket(cfg *config.Config) (proto, addr string) {
	for _, l := range cfg.Listeners {
		if l.Mode.Proto() == "tcp" {
			return "tcp", l.Listen[0]
		}
	}
	if cfg.Admin.Listen != "" {
		return "tcp", cfg.Admin.Listen
	}
	return "udp", cfg.Listeners[0].Listen[0]
}

// listenAddrPort parses a listen address as config accepts it: an empty
// host (":80") is every address, which the relay binds as [::].
func listenAddrPort(addr string) (netip.AddrPort, error) {
	if strings.HasPrefix(addr, ":") {
		addr = "[::]" + addr
	}
	return netip.ParseAddrPort(addr)
}

// servesConfig checks that pid is a relay serving the config file at path:
// its command line names that file with -config (or names none, and path
// is the default). SIGUSR2 ends most programs, and another relay on the
// address serves another config; neither may be signalled.
func servesConfig(pid int, path string) error {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("its command line cannot be read: %w", err)
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	theirs := configArg(args[1:])
	if !filepath.IsAbs(theirs) {
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil {
			theirs = filepath.Join(cwd, theirs)
		}
	}
	a, errA := os.Stat(path)
	b, errB := os.Stat(theirs)
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		// Quoted: another program's arguments may hold newlines and
		// escape sequences, which would reach the terminal raw.
		return fmt.Errorf("is not a relay serving %s (it runs: %q)", path, strings.Join(args, " "))
	}
	return nil
}

// configArg returns the config file relay arguments name: the value of
// -config, else the default.
func configArg(args []string) string {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return defaultConfig
}
