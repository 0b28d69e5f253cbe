//go:build !linux

package udpstream

import (
	"context"
	"net"
)

// sysScratch is empty where there is no batched path.
type sysScratch struct{}

func (*sysScratch) init(*batch) {}

// stdNet is the plain net package as a packetNet: one datagram per call,
// for building and testing off Linux. Production runs on Linux.
type stdNet struct{}

func (stdNet) ListenPacket(network, address string) (net.PacketConn, error) {
	return (&net.ListenConfig{}).ListenPacket(context.Background(), network, address)
}

func (stdNet) Dial(network, address string) (net.Conn, error) {
	return net.Dial(network, address)
}

func defaultNetwork(*Config) network { return newSingleNet(stdNet{}) }
