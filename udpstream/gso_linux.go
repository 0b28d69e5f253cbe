package udpstream

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP GSO (UDP_SEGMENT, Linux ≥ 4.18): a run of equal-size datagrams to one
// destination goes down the stack as one write that the kernel (or the NIC)
// cuts into datagrams at the end. The run's datagrams stay in their own
// buffers; one header points at their iovecs, so nothing is copied.
const (
	gsoMaxSegments = 64    // UDP_MAX_SEGMENTS of older kernels (newer allow 128)
	gsoMaxBytes    = 65507 // one GSO write is one IP packet before segmentation
	gsoCmsgSpace   = 24    // room for one UDP_SEGMENT cmsg; ≥ unix.CmsgSpace(2) everywhere
)

// gsoState is one socket's use of GSO: the largest segment size it sends as
// GSO runs, zero when off. It only ever goes down, when the kernel refuses.
type gsoState struct {
	max atomic.Int32
}

// enable turns GSO on if the kernel knows UDP_SEGMENT.
func (g *gsoState) enable(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		if _, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT); err == nil {
			g.max.Store(gsoMaxBytes)
		}
	})
}

func (g *gsoState) limit() int { return int(g.max.Load()) }

// refused reports whether errno is the kernel refusing a GSO write of
// size-byte segments, and lowers the limit so the retry goes without: EIO
// means the route's device cannot checksum for GSO (GSO off for the socket),
// EINVAL that a segment does not fit the path MTU (off for this size and up).
func (g *gsoState) refused(errno syscall.Errno, size int) bool {
	switch errno {
	case unix.EIO:
		g.max.Store(0)
		return true
	case unix.EINVAL:
		for {
			cur := g.max.Load()
			if int(cur) < size {
				return true // lowered meanwhile; the retry goes without
			}
			if g.max.CompareAndSwap(cur, int32(size-1)) {
				return true
			}
		}
	}
	return false
}

// planWrite fills s.out with the headers that send b.msgs[from:to]: one per
// datagram, or one per run of equal-size datagrams to one destination when
// GSO is on for that size. It returns the number of headers.
func (c *sysConn) planWrite(b *batch, from, to int) int {
	s := &b.sys
	limit := c.gso.limit()
	k := 0
	for i := from; i < to; {
		size := len(b.msgs[i].buf)
		j := i + 1
		if size > 0 && size <= limit {
			segs := min(gsoMaxSegments, gsoMaxBytes/size)
			for j < to && j-i < segs && len(b.msgs[j].buf) == size && b.msgs[j].addr == b.msgs[i].addr &&
				b.msgs[j].local == b.msgs[i].local {
				j++
			}
		}
		for x := i; x < j; x++ {
			s.iovs[x].SetLen(len(b.msgs[x].buf))
		}
		h := &s.out[k].Hdr
		*h = unix.Msghdr{Iov: &s.iovs[i]}
		h.SetIovlen(j - i)
		if !c.connected {
			h.Name = (*byte)(unsafe.Pointer(&s.names[i]))
			h.Namelen = putSockaddr(&s.names[i], b.msgs[i].addr, c.v6)
		}
		cm := s.ctrl[k*outCtrlSpace : (k+1)*outCtrlSpace]
		ctl := 0
		if j-i > 1 {
			ch := (*unix.Cmsghdr)(unsafe.Pointer(&cm[0]))
			ch.Level, ch.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			ch.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&cm[unix.CmsgLen(0)])) = uint16(size)
			ctl = unix.CmsgSpace(2)
		}
		if c.pktinfo && b.msgs[i].local.IsValid() {
			ctl += putPktinfo(cm[ctl:], b.msgs[i].local, c.v6)
		}
		if ctl > 0 {
			h.Control = &cm[0]
			h.SetControllen(ctl)
		}
		s.outEnd[k] = j
		k++
		i = j
	}
	return k
}
