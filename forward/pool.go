package forward

import (
	"sync"
)

// copyBufferSize is the buffer of the fallback copy. 32 KiB is what io.Copy
// uses; larger buffers did not move more bytes through a net.Pipe or a
// TLS-wrapped conn, where the fallback runs.
const copyBufferSize = 32 << 10

// defaultMaxIdlePipes bounds the pipes a Pool keeps while no direction uses
// them. Each costs two descriptors and counts toward the user's pipe pages
// (fs.pipe-user-pages-soft) even when empty, so the free list stays short;
// a miss costs one pipe2(2).
const defaultMaxIdlePipes = 64

// Pool keeps splice pipes and copy buffers for reuse between connections.
// A direction takes a pipe when its source has bytes and gives it back as
// soon as the pipe is empty and the source would block, so an idle
// connection holds no pipe. Pipes beyond the free-list bound are closed at
// once; nothing relies on a finaliser. The zero Pool is not usable: call
// NewPool, and Close it when done.
type Pool struct {
	size    int // F_SETPIPE_SZ request; 0 keeps the kernel default (64 KiB)
	maxIdle int
	bufs    sync.Pool // *[]byte of copyBufferSize, for the fallback copy

	mu     sync.Mutex // guards the following
	free   []*spliceBuf
	closed bool
}

// NewPool returns a pool that keeps at most maxIdle unused pipes
// (zero: 64). It opens nothing until a pipe is asked for.
func NewPool(maxIdle int) *Pool {
	if maxIdle <= 0 {
		maxIdle = defaultMaxIdlePipes
	}
	return &Pool{
		size:    defaultPipeSize,
		maxIdle: maxIdle,
		bufs: sync.Pool{New: func() any {
			b := make([]byte, copyBufferSize)
			return &b
		}},
	}
}

// getPipe returns an empty pipe, from the free list when it can.
// A nil pool makes a new pipe each time.
func (p *Pool) getPipe() (*spliceBuf, error) {
	if p == nil {
		return newSpliceBuf(defaultPipeSize)
	}
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		sb := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return sb, nil
	}
	p.mu.Unlock()
	return newSpliceBuf(p.size)
}

// putPipe takes back an empty pipe. A pipe that may still hold bytes must be
// closed instead, never put back.
func (p *Pool) putPipe(sb *spliceBuf) {
	if p == nil {
		sb.close()
		return
	}
	p.mu.Lock()
	if !p.closed && len(p.free) < p.maxIdle {
		p.free = append(p.free, sb)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	sb.close()
}

func (p *Pool) getBuffer() *[]byte {
	if p == nil {
		b := make([]byte, copyBufferSize)
		return &b
	}
	return p.bufs.Get().(*[]byte)
}

func (p *Pool) putBuffer(b *[]byte) {
	if p != nil {
		p.bufs.Put(b)
	}
}

// Idle reports how many unused pipes the pool holds.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// Close closes the idle pipes; pipes still in use are closed when they come
// back. It is idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	free := p.free
	p.free = nil
	p.closed = true
	p.mu.Unlock()
	for _, sb := range free {
		sb.close()
	}
	return nil
}
