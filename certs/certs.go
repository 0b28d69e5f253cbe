// Package certs reads the TLS material of relay's listeners and upstreams and
// keeps it current across reloads, and makes the small private CA behind
// `relay cert`.
//
// Server is what a TLS listener hands to crypto/tls: a fixed *tls.Config
// whose GetConfigForClient returns the certificate, key and client CA in
// force, swapped atomically by Store, so a reload changes what the next
// handshake uses while established connections go on. Client is the same for
// the originating side, with one session cache that outlives reloads, so
// reconnects resume. Load* read PEM files and name the file in every error;
// a private key is never part of an error or a log line.
//
// Where the job ends: certs does not open sockets or decide who may connect
// (forward runs the handshakes, acl judges the names); config only keeps the
// paths.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// maxFileSize bounds what one certificate, key or CA file may hold. A
// bundle of every public CA is about 220 KiB; a file past 4 MiB is a
// mistake (a disk image, /dev/zero), and reading it whole would take the
// memory of a running relay.
const maxFileSize = 4 << 20

// errTooLarge is a file's error past maxFileSize (in an *fs.PathError,
// which names the file).
var errTooLarge = errors.New("larger than 4 MiB, which no certificate, key or CA file needs")

// ErrNoCertificate is returned for a file without a single PEM certificate.
var ErrNoCertificate = errors.New("certs: no PEM certificate found")

// FileError is a problem with one of the files: Key is the config key that
// names it (cert, key, ca, client_ca), so config can report the key path.
type FileError struct {
	Key  string
	File string
	Err  error
}

func (e *FileError) Error() string { return e.Key + " " + e.File + ": " + e.Err.Error() }

func (e *FileError) Unwrap() error { return e.Err }

// LoadPair reads a PEM certificate chain and its private key, checks that the
// key belongs to the first certificate, and returns them with Leaf parsed.
// Errors name the file at fault; they never quote the key.
func LoadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readFile(certFile)
	if err != nil {
		return nil, &FileError{"cert", certFile, unwrapPath(err)}
	}
	keyPEM, err := readFile(keyFile)
	if err != nil {
		return nil, &FileError{"key", keyFile, unwrapPath(err)}
	}
	if _, err := firstCert(certPEM); err != nil {
		return nil, &FileError{"cert", certFile, err}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The certificate parsed above, so the key is at fault: not a key,
		// or not the one of this certificate. X509KeyPair's messages
		// quote no key material.
		return nil, &FileError{"key", keyFile, fmt.Errorf("%w (certificate %s)", err, certFile)}
	}
	return &pair, nil
}

// LoadPool reads a PEM file of one or more CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, &FileError{"ca", file, unwrapPath(err)}
	}
	if _, err := firstCert(data); err != nil {
		return nil, &FileError{"ca", file, err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, &FileError{"ca", file, ErrNoCertificate}
	}
	return pool, nil
}

// firstCert parses the first CERTIFICATE block of data. Without one, the
// error says what the file holds where that tells the slip: other PEM
// blocks (the key named as the certificate), a certificate in DER, or
// other binary ASN.1 (a DER key, a PKCS#12 export).
func firstCert(data []byte) (*x509.Certificate, error) {
	var others []string // PEM block types, each once
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
		what := block.Type // "CERTIFICATE REQUEST", "PUBLIC KEY"
		if strings.Contains(what, "PRIVATE KEY") {
			what = "private key" // of any kind; the type is not quoted from a key file
		}
		if !slices.Contains(others, what) {
			others = append(others, what)
		}
	}
	switch {
	case len(others) > 0:
		return nil, fmt.Errorf("%w (the file holds a %s)", ErrNoCertificate, strings.Join(others, ", a "))
	case len(data) > 0 && data[0] == 0x30: // an ASN.1 SEQUENCE: binary
		if _, err := x509.ParseCertificate(data); err == nil {
			return nil, fmt.Errorf("%w (the file holds a certificate in binary DER; openssl x509 -inform DER -in FILE turns it into PEM)", ErrNoCertificate)
		}
		return nil, fmt.Errorf("%w (the file is binary: a key in DER, or PKCS#12 from a .pfx or .p12 export? openssl pkcs12 -in FILE -nodes prints its PEM)", ErrNoCertificate)
	}
	return nil, ErrNoCertificate
}

// readFile reads a whole file of at most maxFileSize bytes. Its errors
// are *fs.PathError, naming the file.
func readFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, &fs.PathError{Op: "read", Path: file, Err: errTooLarge}
	}
	return data, nil
}

// unwrapPath drops the *fs.PathError's repetition of the file name.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ReadCert parses the first certificate of a PEM file (for `relay cert show`).
func ReadCert(file string) (*x509.Certificate, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, err
	}
	c, err := firstCert(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}
