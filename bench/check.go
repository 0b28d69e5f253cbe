package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// randomBytes returns n bytes from a seeded generator: the same every run,
// and incompressible.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 'b', 'e', 'n', 'c', 'h'})
	_, _ = r.Read(b)
	return b
}

// hashTransfer sends data, length first, to a hashReply backend through
// addr and checks that the SHA-256 and length it reports match.
func hashTransfer(addr string, data []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(len(data))))
		if err == nil {
			_, err = c.Write(data)
		}
		werr <- err
	}()
	var reply [40]byte
	_, rerr := io.ReadFull(c, reply[:])
	if err := <-werr; err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if rerr != nil {
		return integrityf("no digest from the backend: %v", rerr)
	}
	if got := binary.BigEndian.Uint64(reply[32:]); got != uint64(len(data)) {
		return integrityf("backend received %d bytes, sent %d", got, len(data))
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(reply[:32], want[:]) {
		return integrityf("SHA-256 of what arrived differs from what was sent (%d bytes)", len(data))
	}
	return nil
}
