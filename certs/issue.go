package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Kind is what an issued certificate may be used for.
type Kind int

const (
	KindServer Kind = iota // a listener's certificate (server auth)
	KindClient             // a box office's certificate (client auth)
)

// Request describes a certificate to make.
type Request struct {
	Name string // the subject's common name
	// Hosts become SANs: IP literals as IP addresses, the rest as DNS
	// names. Name is added as a DNS name when it is a valid one and Hosts
	// does not already list it.
	Hosts    []string
	NotAfter time.Time // required
	// NotBefore zero: five minutes ago, so a peer whose clock is a little
	// behind accepts a certificate issued just now.
	NotBefore time.Time
}

// Authority is a CA able to issue certificates.
type Authority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// backdate is how far before "now" a certificate's validity starts.
const backdate = 5 * time.Minute

// NewAuthority makes a self-signed ECDSA P-256 CA.
func NewAuthority(req Request) (*Authority, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	tmpl, err := template(req)
	if err != nil {
		return nil, nil, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &Authority{Cert: cert, Key: key}, der, nil
}

// LoadAuthority reads a CA certificate and its key, as NewAuthority wrote them.
func LoadAuthority(certFile, keyFile string) (*Authority, error) {
	pair, err := LoadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key %s: not an ECDSA key", keyFile)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("certificate %s: not a CA certificate", certFile)
	}
	return &Authority{Cert: pair.Leaf, Key: key}, nil
}

// Issue makes an ECDSA P-256 key and a certificate for it signed by a. A
// CA that is not valid now issues nothing (what it signs verifies
// nowhere), and the certificate ends no later than the CA: a chain is
// valid only as long as its CA.
func (a *Authority) Issue(kind Kind, req Request) ([]byte, *ecdsa.PrivateKey, error) {
	switch now, ca := time.Now(), a.Cert; {
	case now.After(ca.NotAfter):
		return nil, nil, fmt.Errorf("certs: the CA %s expired on %s: make a new one and issue again",
			ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(ca.NotBefore):
		return nil, nil, fmt.Errorf("certs: the CA %s is not valid before %s",
			ca.Subject.CommonName, ca.NotBefore.UTC().Format(time.RFC3339))
	}
	if req.NotAfter.After(a.Cert.NotAfter) {
		req.NotAfter = a.Cert.NotAfter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	tmpl, err := template(req)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if kind == KindClient {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, h := range req.Hosts {
		switch ip := net.ParseIP(h); {
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		case isDNSName(h):
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		default:
			// "10.0.0.1:443" or "venue local" would be a name no client
			// asks for: the handshake would fail at the far end.
			return nil, nil, fmt.Errorf("certs: host %q is neither an IP address nor a DNS name", h)
		}
	}
	if isDNSName(req.Name) && !slices.Contains(tmpl.DNSNames, req.Name) && net.ParseIP(req.Name) == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, req.Name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign certificate for %s: %w", req.Name, err)
	}
	return der, key, nil
}

func template(req Request) (*x509.Certificate, error) {
	if req.Name == "" {
		return nil, errors.New("certs: a certificate needs a name")
	}
	// 128 random bits: serials must be unique per CA and unpredictable.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: serial: %w", err)
	}
	notBefore := req.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	if !req.NotAfter.After(notBefore) {
		return nil, fmt.Errorf("certs: validity ends (%s) before it starts (%s)",
			req.NotAfter.UTC().Format(time.RFC3339), notBefore.UTC().Format(time.RFC3339))
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name},
		NotBefore:    notBefore,
		NotAfter:     req.NotAfter,
	}, nil
}

// isDNSName is a loose check: letters, digits, '-', '.', '*' labels, and
// '_', which crypto/x509 matches too (names outside the public web use it).
// The last label is not all digits (RFC 3696, 2): "10.0.0.300" or
// "192.168.1" is a mistyped IPv4 address, which no client would ask for
// by that name.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '*' || c == '_') {
			return false
		}
	}
	last := strings.TrimSuffix(s, ".")
	last = last[strings.LastIndexByte(last, '.')+1:]
	return strings.Trim(last, "0123456789") != ""
}

// WriteFiles writes a certificate and its key as PEM. The key file is made
// with mode 0600 before any byte of the key is written. Existing files are
// refused unless overwrite is set. Both are written beside their places
// first and then put in place, the certificate first, so a write that
// fails (a full disk, a path that is a folder, a file that exists) leaves
// the pair that was there as it was: a venue's key is never replaced
// without its certificate, nor a certificate without its key (one put in
// place goes back when its key cannot follow). Overwriting replaces the
// files (a symlink too) with new ones, owned by the caller.
func WriteFiles(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey, overwrite bool) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encode key: %w", err)
	}
	keyTmp, err := writeTemp(keyFile, "PRIVATE KEY", keyDER, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(keyTmp) // gone once placed
	certTmp, err := writeTemp(certFile, "CERTIFICATE", der, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(certTmp)
	if !overwrite {
		// Checked, not refused by the file system (a hard link would,
		// but a USB stick's FAT has none): relay cert is run by hand.
		for _, f := range []string{certFile, keyFile} {
			if _, err := os.Lstat(f); err == nil {
				return fmt.Errorf("certs: %s: %w", f, fs.ErrExist)
			}
		}
	}
	// The certificate there now, kept under a second name (a hard link:
	// it stays in place meanwhile), goes back if the key cannot follow
	// the new one (its name is a folder, a bind mount, an immutable file).
	_, err = os.Lstat(certFile)
	existed := err == nil
	old := certTmp + ".old"
	kept := existed && os.Link(certFile, old) == nil // no hard links on FAT
	if kept {
		defer os.Remove(old)
	}
	if err := os.Rename(certTmp, certFile); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.Rename(keyTmp, keyFile); err != nil {
		err = fmt.Errorf("certs: write %s: %w", keyFile, linkCause(err))
		var undo error
		switch {
		case kept:
			undo = os.Rename(old, certFile)
		case !existed:
			undo = os.Remove(certFile)
		default:
			return fmt.Errorf("%w; %s holds the new certificate without its key: issue again once the key can be written", err, certFile)
		}
		if undo != nil {
			return fmt.Errorf("%w; putting %s back failed too: %v", err, certFile, undo)
		}
		return fmt.Errorf("%w (%s is as it was)", err, certFile)
	}
	return nil
}

// linkCause drops the *os.LinkError's temporary file names.
func linkCause(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// writeTemp writes a PEM block to a new file beside file, with mode, and
// returns its name.
func writeTemp(file, typ string, der []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("certs: write %s: %w", file, unwrapPath(err)) // the file asked for, not the temporary one
	}
	err = f.Chmod(mode)
	if err == nil {
		err = pem.Encode(f, &pem.Block{Type: typ, Bytes: der})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("certs: write %s: %w", file, err)
	}
	return f.Name(), nil
}

// Fingerprint is the SHA-256 of a certificate's DER, in colon-separated hex
// (the form `openssl x509 -fingerprint -sha256` prints).
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// Describe prints what `relay cert show` shows: subject, issuer, SANs,
// validity, serial and fingerprint. Nothing about the key.
func Describe(c *x509.Certificate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "subject:     %s\n", printable(c.Subject.String()))
	fmt.Fprintf(&b, "issuer:      %s\n", printable(c.Issuer.String()))
	var sans []string
	for _, n := range c.DNSNames {
		sans = append(sans, printable(n))
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	if len(sans) > 0 {
		fmt.Fprintf(&b, "names:       %s\n", strings.Join(sans, ", "))
	}
	fmt.Fprintf(&b, "use:         %s\n", usage(c))
	fmt.Fprintf(&b, "not before:  %s\n", c.NotBefore.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "not after:   %s\n", c.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "serial:      %x\n", c.SerialNumber)
	fmt.Fprintf(&b, "sha256:      %s\n", Fingerprint(c))
	return b.String()
}

// printable returns s, or where it holds a character that is not
// printable, s with Go's escapes (\x1b, \n): a certificate from elsewhere
// may carry an escape sequence for the terminal, or a newline that forges
// a line of Describe's output.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func usage(c *x509.Certificate) string {
	if c.IsCA {
		return "CA"
	}
	var u []string
	for _, e := range c.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "server")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "client")
		}
	}
	if len(u) == 0 {
		return "unspecified"
	}
	return strings.Join(u, ", ")
}

// TLSCertificate bundles an issued certificate and key for crypto/tls, for
// tests and tools that need no files.
func TLSCertificate(der []byte, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
