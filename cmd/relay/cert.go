package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/edgerelay/relay/certs"
)

// certUsage is printed for a missing or unknown cert action.
const certUsage = `usage:
  relay cert ca     [-dir DIR] [-name NAME] [-days N]          make DIR/ca.crt and DIR/ca.key
  relay cert server -name NAME [-host H,...] [-dir DIR] [-days N]  issue DIR/NAME.crt and .key for a listener
  relay cert client -name NAME [-dir DIR] [-days N]             issue DIR/NAME.crt and .key for a box office
  relay cert show FILE                                          print a certificate's subject, names, validity, fingerprint
`

// cert runs `relay cert`: a small private CA (ECDSA P-256) and the server
// and client certificates of a venue and its box offices. Keys are written
// 0600 and never printed.
func cert(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stderr, certUsage)
		return 2
	}
	action, args := args[0], args[1:]
	if action == "show" {
		return certShow(args, stdout, stderr)
	}
	kinds := map[string]certs.Kind{"server": certs.KindServer, "client": certs.KindClient}
	if _, ok := kinds[action]; !ok && action != "ca" {
		fmt.Fprintf(stderr, "relay cert: unknown action %q\n%s", action, certUsage)
		return 2
	}
	fs := flag.NewFlagSet("relay cert "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "`folder` of the CA's ca.crt and ca.key, where the new files go")
	name := fs.String("name", "", "the certificate's common `name`; files are NAME.crt and NAME.key (ca: default relay-ca)")
	hosts := fs.String("host", "", "server: comma-separated DNS names and IPs the certificate is valid for (the name is added)")
	days := fs.Int("days", 0, "validity in `days` (default: 3650 for the CA, 825 otherwise)")
	notBefore := fs.String("not-before", "", "start of validity, RFC 3339 (default: five minutes ago)")
	force := fs.Bool("force", false, "overwrite existing files")
	if fs.Parse(args) != nil || strayArgs(fs) {
		return 2
	}
	if *dir == "" { // -dir $PKI with PKI unset
		fmt.Fprintf(stderr, "relay cert %s: -dir is empty (the current folder is -dir .)\n", action)
		return 2
	}
	// 0 stands for "not given" below; a 0 typed is no validity at all.
	if *days == 0 && given(fs, "days") {
		fmt.Fprintf(stderr, "relay cert %s: -days 0: must be positive (leave -days out for the default)\n", action)
		return 2
	}
	req, err := certRequest(action, *name, *hosts, *days, *notBefore)
	if err != nil {
		fmt.Fprintf(stderr, "relay cert %s: %v\n", action, err)
		return 2
	}
	caCrt, caKey := filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key")
	var der []byte
	var crt, key string
	if action == "ca" {
		ca, d, err := certs.NewAuthority(req)
		if err != nil {
			fmt.Fprintf(stderr, "relay cert ca: %v\n", err)
			return 1
		}
		// The CA's folder may be new (/etc/relay/tls on a fresh box);
		// it holds the CA's key, so only its owner may enter it.
		if err = os.MkdirAll(*dir, 0o700); err == nil {
			err = certs.WriteFiles(caCrt, caKey, d, ca.Key, *force)
		}
		if err != nil {
			fmt.Fprintf(stderr, "relay cert ca: %v\n", err)
			return 1
		}
		der, crt, key = d, caCrt, caKey
	} else {
		ca, err := certs.LoadAuthority(caCrt, caKey)
		if err != nil {
			fmt.Fprintf(stderr, "relay cert %s: the CA in %s: %v (make it with: relay cert ca -dir %s)\n", action, *dir, err, *dir)
			return 1
		}
		d, k, err := ca.Issue(kinds[action], req)
		if err == nil {
			crt, key = filepath.Join(*dir, req.Name+".crt"), filepath.Join(*dir, req.Name+".key")
			err = certs.WriteFiles(crt, key, d, k, *force)
		}
		if err != nil {
			fmt.Fprintf(stderr, "relay cert %s: %v\n", action, err)
			return 1
		}
		der = d
	}
	c, err := certs.TLSCertificate(der, nil)
	if err != nil {
		fmt.Fprintf(stderr, "relay cert %s: %v\n", action, err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s and %s (key, mode 0600)\n%s", crt, key, certs.Describe(c.Leaf))
	if c.Leaf.NotAfter.Before(req.NotAfter.Truncate(time.Second)) {
		fmt.Fprintf(stdout, "note: its validity ends with the CA's, before the %s asked for\n", req.NotAfter.UTC().Format(time.DateOnly))
	}
	// Written as asked (tests and staged renewals want these), but a
	// -not-before a century off shows here, not at the first handshake.
	switch now := time.Now(); {
	case c.Leaf.NotAfter.Before(now):
		fmt.Fprintf(stdout, "note: it expired on %s, before it was made\n", c.Leaf.NotAfter.UTC().Format(time.DateOnly))
	case c.Leaf.NotBefore.After(now):
		fmt.Fprintf(stdout, "note: it is not valid before %s\n", c.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return 0
}

// maxDays bounds -days well inside the years a certificate can carry
// (up to 9999).
const maxDays = 1_000_000

// certRequest checks the flags of a ca, server or client action.
func certRequest(action, name, hosts string, days int, notBefore string) (certs.Request, error) {
	req := certs.Request{Name: name}
	switch {
	case action == "ca" && name == "":
		req.Name = "relay-ca"
	case name == "":
		return req, fmt.Errorf("-name is required")
	case strings.ContainsAny(name, `/\`) || name == "ca" || strings.HasPrefix(name, "."):
		return req, fmt.Errorf("-name %q cannot be a file name here", name)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		// A newline pasted with the name, an escape sequence: it would be
		// in the file names and in every line that prints the subject.
		return req, fmt.Errorf("-name %q: a control character or invalid UTF-8 has no place in a certificate's name", name)
	}
	if hosts != "" {
		if action != "server" {
			return req, fmt.Errorf("-host is for server certificates")
		}
		// "a, b," as typed: a space would become part of the name (which
		// then matches no client's) and an empty entry an empty one.
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				req.Hosts = append(req.Hosts, h)
			}
		}
	}
	start := time.Now()
	if notBefore != "" {
		t, err := time.Parse(time.RFC3339, notBefore)
		if err != nil {
			return req, fmt.Errorf("-not-before: %v", err)
		}
		req.NotBefore, start = t, t
	}
	if days == 0 {
		days = 825
		if action == "ca" {
			days = 3650
		}
	}
	if days < 0 {
		return req, fmt.Errorf("-days %d: must be positive", days)
	}
	if days > maxDays {
		return req, fmt.Errorf("-days %d: at most %d", days, maxDays)
	}
	// By the calendar: days as a time.Duration overflows past 292 years.
	req.NotAfter = start.AddDate(0, 0, days)
	return req, nil
}

// certShow prints what a certificate file holds.
func certShow(args []string, stdout, stderr io.Writer) int {
	// No flags of its own; the flag package still says which argument is
	// wrong (-v), answers -h, and takes "--" before a file named -x.crt.
	fs := flag.NewFlagSet("relay cert show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, certUsage) }
	if fs.Parse(args) != nil {
		return 2
	}
	switch fs.NArg() {
	case 1:
	case 0:
		fs.Usage()
		return 2
	default:
		fmt.Fprintf(stderr, "relay cert show: unexpected argument %q\n", fs.Arg(1))
		fs.Usage()
		return 2
	}
	args = fs.Args()
	c, err := certs.ReadCert(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "relay cert show: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "file:        %s\n%s", args[0], certs.Describe(c))
	return 0
}

// given reports whether the flag called name was on the command line.
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// isHelp reports whether arg asks for usage, as the flag package takes it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--h", "--help":
		return true
	}
	return false
}
