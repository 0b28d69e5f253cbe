package config

import (
	"crypto/tls"
	"errors"
	"path/filepath"

	"github.com/edgerelay/relay/certs"
)

// resolveTLS checks a listener's tls section and reads its files once, so
// that a missing file, a key that does not fit its certificate or an
// unreadable CA is reported at its key path now rather than at the first
// handshake. The files are read again by whoever serves them (and on every
// reload); Config keeps only their paths.
func resolveTLS(ft *fileTLS, dir, path string, p *problems) *certs.ServerFiles {
	if ft == nil {
		return nil
	}
	f := &certs.ServerFiles{
		Cert:       filePath(dir, ft.Cert),
		Key:        filePath(dir, ft.Key),
		ClientCA:   filePath(dir, ft.ClientCA),
		MinVersion: tls.VersionTLS13,
	}
	ok := required(ft.Cert, path+".cert", "the listener's certificate (PEM)", p)
	ok = required(ft.Key, path+".key", "the certificate's private key (PEM)", p) && ok
	switch ft.MinVersion {
	case "", "1.3":
	case "1.2":
		f.MinVersion = tls.VersionTLS12
	default:
		p.addf(path+".min_version", "unknown version %q (want 1.2 or 1.3)", ft.MinVersion)
	}
	f.KeyExchange = keyExchange(ft.KeyExchange, path, p)
	if ok {
		if _, err := certs.LoadServer(*f); err != nil {
			addFileError(err, path, p)
		}
	}
	return f
}

// resolveUpstreamTLS is resolveTLS for the upstream_tls section.
func resolveUpstreamTLS(fu *fileUpstreamTLS, dir, path string, p *problems) *certs.ClientFiles {
	if fu == nil {
		return nil
	}
	f := &certs.ClientFiles{
		CA:         filePath(dir, fu.CA),
		ServerName: fu.ServerName,
		Cert:       filePath(dir, fu.Cert),
		Key:        filePath(dir, fu.Key),
	}
	f.KeyExchange = keyExchange(fu.KeyExchange, path, p)
	ok := required(fu.CA, path+".ca", "the CA the upstream's certificate must chain to; there is no way to skip verification", p)
	if (fu.Cert == "") != (fu.Key == "") {
		ok = false
		if fu.Cert == "" {
			p.add(path+".cert", "missing: key is set, and a client certificate needs both")
		} else {
			p.add(path+".key", "missing: cert is set, and a client certificate needs both")
		}
	}
	if ok {
		if _, err := certs.LoadClient(*f); err != nil {
			addFileError(err, path, p)
		}
	}
	return f
}

// keyExchange reads a key_exchange key; an unknown name is reported and
// leaves the default.
func keyExchange(v, path string, p *problems) certs.KeyExchange {
	k, err := certs.ParseKeyExchange(v)
	if err != nil {
		p.add(path+".key_exchange", err.Error())
	}
	return k
}

func required(v, path, what string, p *problems) bool {
	if v == "" {
		p.add(path, "missing: "+what)
		return false
	}
	return true
}

// addFileError reports a certs error at the key that names the file.
func addFileError(err error, path string, p *problems) {
	var fe *certs.FileError
	if errors.As(err, &fe) {
		p.addf(path+"."+fe.Key, "%s: %v", fe.File, fe.Err)
		return
	}
	p.add(path, err.Error())
}

// filePath makes a relative path relative to the config file's folder, so
// a config and its certificates or ACL file can move together.
func filePath(dir, file string) string {
	if file == "" || filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(dir, file)
}
