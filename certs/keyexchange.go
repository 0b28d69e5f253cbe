package certs

import (
	"crypto/tls"
	"fmt"
)

// KeyExchange is the (EC)DHE key exchange a TLS side offers or accepts. TLS
// 1.3 runs one on every handshake, a resumed one too (Go's crypto/tls
// resumes with psk_dhe_ke only), so it is most of what a resumption costs.
type KeyExchange uint8

const (
	// KeyExchangeHybrid prefers X25519MLKEM768 (X25519 combined with the
	// post-quantum ML-KEM-768, so a recorded session stays secret against
	// a future quantum computer) and accepts the classical groups from a
	// peer without it: crypto/tls's default. The zero value.
	KeyExchangeHybrid KeyExchange = iota
	// KeyExchangeX25519 offers and accepts X25519 alone: about a third
	// less CPU per resumed handshake, no post-quantum protection.
	KeyExchangeX25519
)

// ParseKeyExchange reads the config spelling: "hybrid" (or empty) or "x25519".
func ParseKeyExchange(s string) (KeyExchange, error) {
	switch s {
	case "", "hybrid":
		return KeyExchangeHybrid, nil
	case "x25519":
		return KeyExchangeX25519, nil
	}
	return 0, fmt.Errorf("unknown key exchange %q (want hybrid or x25519)", s)
}

func (k KeyExchange) String() string {
	if k == KeyExchangeX25519 {
		return "x25519"
	}
	return "hybrid"
}

// curves is the tls.Config.CurvePreferences of k; nil is crypto/tls's
// default list, which starts with X25519MLKEM768.
func (k KeyExchange) curves() []tls.CurveID {
	if k == KeyExchangeX25519 {
		return []tls.CurveID{tls.X25519}
	}
	return nil
}
