// Command relay is the port-forwarder's binary: it parses the command line,
// loads the config, and hands everything else to package daemon.
//
//	relay [-config FILE] [-watch] run (default FILE: /etc/relay/relay.yaml); -watch
//	                              also reloads when the config or ACL file changes;
//	                              SIGHUP reloads, SIGUSR2 upgrades the binary in place
//	relay check -config FILE      validate, print the resolved listeners and
//	                              the warnings relay would log (-strict: fail on them)
//	relay check -config FILE -acl-test ADDR -listener NAME  (a UDP source on a udp listener)
//	relay check ... -acl-test ADDR -listener NAME -cn NAME   the same for a TLS client certificate
//	relay example [-acl]          print a commented example config (CAYIN), or its ACL file
//	relay cert ca|server|client|show  a private CA and the certificates of TLS tunnels
//	relay upgrade -config FILE    SIGUSR2 to the relay serving FILE; wait until the new process serves
//	relay version
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/config"
	"github.com/edgerelay/relay/daemon"
	"github.com/edgerelay/relay/examples"
	"github.com/edgerelay/relay/sdnotify"
)

const defaultConfig = "/etc/relay/relay.yaml"

// watchDebounce is how long the files must stay quiet after a change before
// -watch reloads: long enough for an editor's write-rename-chmod, short
// enough to feel immediate. A file still open for writing waits for its
// close as well (daemon.Watch).
const watchDebounce = 500 * time.Millisecond

func main() {
	stdout := &outWriter{w: os.Stdout}
	code := run(os.Args[1:], stdout, os.Stderr)
	if stdout.err != nil && code == 0 {
		// `relay example > relay.yaml` on a full disk: the file is cut
		// short, and a script must not go on as if it were whole.
		fmt.Fprintf(os.Stderr, "relay: the output was not written whole: %v\n", stdout.err)
		code = 1
	}
	os.Exit(code)
}

// outWriter keeps the first error of writing the commands' output, which
// they print without looking (only relay check does).
type outWriter struct {
	w   io.Writer
	err error
}

func (o *outWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	o.err = err
	return n, err
}

// usage heads relay -h: every sub-command, then run's flags. Each
// command's own -h lists its flags.
const usage = `Usage of relay:
  relay [-config FILE] [-watch]     run (the default command): forward until SIGTERM
  relay check -config FILE          validate; -strict, -resolve, -acl-test ADDR -listener NAME [-cn NAME]
  relay example [-acl]              print the commented CAYIN example, or its ACL file
  relay cert ca|server|client|show  a private CA and the certificates of TLS tunnels
  relay upgrade -config FILE        swap in a new binary without refusing a connection
  relay version
relay COMMAND -h lists a command's flags. Flags of run:
`

// commands are relay's sub-commands; run is the default.
var commands = []string{"run", "check", "example", "cert", "upgrade", "version"}

// run dispatches on the sub-command and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return serve(args, stderr)
	case "help": // as -h: the usage, exit 2
		return serve([]string{"-h"}, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "example":
		return example(args, stdout, stderr)
	case "cert":
		return cert(args, stdout, stderr)
	case "upgrade":
		return upgradeCmd(args, stdout, stderr)
	case "version":
		fs := flag.NewFlagSet("relay version", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if fs.Parse(args) != nil || strayArgs(fs) {
			return 2
		}
		fmt.Fprintln(stdout, version())
		return 0
	default:
		fmt.Fprintf(stderr, "relay: unknown command %q (want %s)\n", cmd, strings.Join(commands, ", "))
		if strings.HasSuffix(cmd, ".yaml") || strings.HasSuffix(cmd, ".yml") {
			fmt.Fprintf(stderr, "name the config file with a flag: relay -config %s\n", cmd)
		}
		return 2
	}
}

// loader parses the flags shared by run and check and returns the config
// loader they describe, or false after printing a usage error.
func loader(fs *flag.FlagSet, args []string) (func() (*config.Config, error), bool) {
	path := fs.String("config", defaultConfig, "config `file` (YAML)")
	flags := config.RegisterFlags(fs)
	if fs.Parse(args) != nil || strayArgs(fs) {
		return nil, false // the flag package or strayArgs said why
	}
	return func() (*config.Config, error) {
		return config.Load(config.LoadOptions{Path: *path, Flags: flags})
	}, true
}

// strayArgs reports an argument left after the flags as a usage error on
// fs's output, with a hint for the two usual slips: the config file without
// -config, and the command written after the flags (the flag package stops
// at the first argument that is not a flag).
func strayArgs(fs *flag.FlagSet) bool {
	if fs.NArg() == 0 {
		return false
	}
	arg, out := fs.Arg(0), fs.Output()
	fmt.Fprintf(out, "%s: unexpected argument %q\n", fs.Name(), arg)
	switch {
	case slices.Contains(commands, arg):
		fmt.Fprintf(out, "the command comes before its flags: relay %s -config FILE ...\n", arg)
	case strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml"):
		fmt.Fprintf(out, "name the config file with a flag: -config %s\n", arg)
	}
	fs.Usage()
	return true
}

// serve loads the config (taking the sockets over when a running relay's
// upgrade started this process), starts the relay and serves until stopped.
func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	watch := fs.Bool("watch", false, "also reload when the config or ACL file changes")
	load, ok := loader(fs, args)
	if !ok {
		return 2
	}
	// Before anything that takes time (receiving the sockets, reading the
	// config, binding): SIGHUP's and SIGUSR2's default is to end the
	// process, and a SIGHUP meanwhile is a reload once the relay serves.
	// SIGTERM keeps ending a relay that does not serve yet at once.
	sig := notifySignals()
	defer sig.release()
	// Started by a running relay's upgrade: take its sockets, and tell it
	// below whether this process serves.
	takeover, err := daemon.TakeoverFromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 1
	}
	cfg, err := load()
	if err != nil {
		takeover.Report(err)
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 1
	}
	log, levels := daemon.NewLogger(os.Stderr, cfg.Log.Format, cfg.Log.Level)
	d := daemon.New(cfg, daemon.Options{
		Load:     load,
		Log:      log,
		Levels:   levels,
		Notify:   sdnotify.New(os.Getenv("NOTIFY_SOCKET")),
		Version:  version(),
		Takeover: takeover,
	})

	sig.catchStop() // before Start: from now on a stop drains
	err = d.Start()
	takeover.Report(err)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	return serveUntilStopped(d, log, sig, *watch)
}

// signals are the ones the relay acts on.
type signals struct {
	stopped   context.Context // done at SIGTERM or SIGINT
	stop      context.CancelFunc
	hup, usr2 chan os.Signal
	pipe      chan os.Signal // never read: caught only so that it does not kill
}

// notifySignals catches SIGHUP and SIGUSR2; catchStop adds SIGTERM and
// SIGINT. SIGPIPE is caught too: Go ends a process whose write to stderr
// meets a broken pipe with it unless it is caught, so a relay whose log
// reader went away (a restarted logger) died at its next log line with
// every connection. Caught, the write fails and the line is lost.
func notifySignals() *signals {
	s := &signals{hup: make(chan os.Signal, 1), usr2: make(chan os.Signal, 1), pipe: make(chan os.Signal, 1)}
	s.stopped, s.stop = context.WithCancel(context.Background())
	signal.Notify(s.hup, syscall.SIGHUP)
	signal.Notify(s.usr2, syscall.SIGUSR2)
	signal.Notify(s.pipe, syscall.SIGPIPE)
	return s
}

func (s *signals) catchStop() {
	s.stop()
	s.stopped, s.stop = signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func (s *signals) release() {
	s.stop()
	signal.Stop(s.hup)
	signal.Stop(s.usr2)
	signal.Stop(s.pipe)
}

// serveUntilStopped serves until SIGTERM or SIGINT, or until an upgrade
// (SIGUSR2) handed everything to a new process; SIGHUP (and with watch, a
// changed file) reloads. After the first stop signal the default signal
// handling is restored, so a second one ends the process at once instead
// of waiting for the drain.
func serveUntilStopped(d *daemon.Daemon, log zerolog.Logger, sig *signals, watch bool) int {
	ctx, hup, usr2 := sig.stopped, sig.hup, sig.usr2

	var changed <-chan struct{} // nil without -watch: never ready
	if watch {
		var err error
		if changed, err = d.Watch(watchDebounce); err != nil {
			log.Error().Err(err).Msg("cannot watch the config; reload with SIGHUP")
		}
	}
	for ctx.Err() == nil {
		select {
		case <-hup:
			reloadUnlessStopped(ctx, d)
		case <-changed:
			log.Info().Msg("config or ACL file changed")
			reloadUnlessStopped(ctx, d)
		case <-usr2:
			if pid, err := d.Upgrade(ctx); err == nil { // logged by Upgrade; a failure changes nothing
				passOnReload(pid, hup, changed, log)
				drainUpgraded(d, log, sig)
				return 0
			}
		case <-ctx.Done():
		}
	}
	sig.stop()
	grace := d.Config().ShutdownGrace
	log.Info().Dur("grace_ms", grace).Msg("stopping: draining connections (a second signal stops at once)")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error().Err(err).Msg("shutdown")
	}
	return 0
}

// reloadUnlessStopped reloads d, or stops waiting for the reload when ctx
// (SIGTERM, SIGINT) is done first: a reload can wait for good on its files
// (a FIFO nobody writes, a hung network mount), and the relay must still
// stop when told to. The reload's goroutine then ends with the process: the
// drain that follows does not wait for it, and a reload that gets its
// files meanwhile finds the daemon stopped and changes nothing
// (daemon.ErrStopped).
func reloadUnlessStopped(ctx context.Context, d *daemon.Daemon) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Reload() // logged by Reload; a bad config changes nothing
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// passOnReload sends the new process of an upgrade the reload that was
// asked for while the upgrade ran (a SIGHUP, or a changed file with -watch):
// it read the config before, and this process reloads nothing any more.
func passOnReload(pid int, hup <-chan os.Signal, changed <-chan struct{}, log zerolog.Logger) {
	select {
	case <-hup:
	case <-changed:
	default:
		return
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		log.Warn().Err(err).Int("pid", pid).Msg("upgrade: could not pass the reload asked for meanwhile on to the new process")
		return
	}
	log.Info().Int("pid", pid).Msg("upgrade: the reload asked for meanwhile is passed on to the new process")
}

// drainUpgraded lets the connections of a process that handed its sockets
// to a new one finish as a reload lets a retired listener's: until they
// end, or reload.hard_stop_after; a stop signal (systemctl stop reaches
// both processes) bounds the rest by shutdown_grace, and restores the
// default handling, so that a second one stops at once.
func drainUpgraded(d *daemon.Daemon, log zerolog.Logger, sig *signals) {
	cfg := d.Config()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if hardStop := cfg.Reload.HardStopAfter; hardStop > 0 {
		t := time.AfterFunc(hardStop, func() {
			if n := d.Open(); n > 0 {
				log.Warn().Int64("cut", n).Dur("hard_stop_after_ms", hardStop).
					Msg("reload.hard_stop_after reached: cutting the connections left from before the upgrade")
			}
			cancel()
		})
		defer t.Stop()
	}
	graceAfterSignal := context.AfterFunc(sig.stopped, func() {
		sig.stop()
		log.Info().Dur("grace_ms", cfg.ShutdownGrace).
			Msg("stopping: draining the connections left from before the upgrade (a second signal stops at once)")
		time.AfterFunc(cfg.ShutdownGrace, cancel)
	})
	defer graceAfterSignal()
	_ = d.Shutdown(ctx)
}

// installedACL is the ACL file's name beside an installed relay.yaml, as
// README, deploy/INSTALL.md, the unit and the Debian package write it.
const installedACL = "relay_hba.conf"

// example prints the CAYIN example config as it is installed, naming its
// ACL file relay_hba.conf (in examples/ it is cayin_hba.conf, beside the
// other layouts), or with -acl that ACL file, so both can be written out
// as relay.yaml and relay_hba.conf and edited.
func example(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relay example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	aclFile := fs.Bool("acl", false, "print the example's ACL file ("+installedACL+") instead")
	if fs.Parse(args) != nil || strayArgs(fs) {
		return 2
	}
	text := examples.CAYIN
	if *aclFile {
		text = examples.CAYINACL
	}
	text = bytes.ReplaceAll(text, []byte("cayin_hba.conf"), []byte(installedACL))
	text = bytes.ReplaceAll(text, []byte("cayin.yaml"), []byte("relay.yaml"))
	_, _ = stdout.Write(text)
	return 0
}

// stampedVersion is set at build time by the Makefile
// (-ldflags "-X main.stampedVersion=$(VERSION)", from git describe); the
// only package-level variable, written by the linker and never at run time.
var stampedVersion string

func version() string {
	bi, _ := debug.ReadBuildInfo()
	return fmt.Sprintf("relay %s %s %s/%s", versionOf(stampedVersion, bi), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// versionOf names the build: the stamped version, else the module version
// (go install …@v1.2.3), else the commit Go embeds from the VCS (with
// +dirty for uncommitted changes), else (devel).
func versionOf(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if bi == nil {
		return "(devel)"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev == "" {
		return "(devel)"
	}
	return rev + dirty
}
