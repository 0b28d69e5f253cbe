package forward

import (
	"errors"
	"sync"
)

// copyBufferSize is the buffer of the fallback copy. 32 KiB is what io.Copy
// uses; larger buffers did not move more bytes through a net.Pipe or a
// TLS-wrapped conn, where the fallback runs.
const copyBufferSize = 32 << 10

// defaultMaxIdlePipes bounds the pipes a Pool keeps while no direction uses
// them. Each costs two descriptors and counts toward the user's pipe pages
// (fs.pipe-user-pages-soft) even when empty, so the free list stays short;
// a miss costs a pipe2(2) and an fcntl(2).
const defaultMaxIdlePipes = 64

// Pool keeps splice pipes and copy buffers for reuse between connections.
// A direction takes a pipe when its source has bytes and gives it back as
// soon as the pipe is empty and the source would block, so an idle
// connection holds no pipe. Pipes beyond the free-list bound are closed at
// once; nothing relies on a finaliser. The zero Pool is not usable: call
// NewPool, and Close it when done. One Pool may serve many listeners.
//
// Pipe size: a pool asks for big pipes (bigPipeSize) while its pipe-page
// budget lasts and takes the kernel's default (64 KiB) after that; see
// pipeBudget for why.
type Pool struct {
	maxIdle int
	bigSize int       // F_SETPIPE_SZ request while the budget lasts; 0: never
	budget  int       // pages the pool may hold in big pipes; < 0: no limit
	bufs    sync.Pool // *[]byte of copyBufferSize, for the fallback copy
	batches sync.Pool // *[]byte, TLS records waiting for one write (recordConn)
	// openPipe makes a new pipe; nil: newSpliceBuf. Tests make it fail to
	// play a process out of file descriptors.
	openPipe func(size int) (*spliceBuf, error)
	// pk holds the idle directions of every forward using the pool (see
	// parker), made at the first parker call; nil without epoll.
	pk       *parker
	parkOnce sync.Once
	// frMu guards the front, which serves the young connections of the
	// plain tcp listeners using the pool (front_linux.go) while one holds
	// it (holdFront): the last to let go stops it, the next to hold it
	// starts another. The pool lives as long as the daemon, the listeners
	// only until a reload removes them; a front kept for the pool's life
	// was a goroutine and two descriptors left behind by a config that no
	// longer has a plain tcp listener.
	frMu      sync.Mutex
	fr        *front // nil: none running
	frHolders int
	frClosed  bool // Close ran: no front any more

	mu       sync.Mutex // guards the following
	free     []*spliceBuf
	inUse    int // pipes handed out and not yet back
	bigPages int // pages held in big pipes, in use or free
	closed   bool
}

// NewPool returns a pool that keeps at most maxIdle unused pipes
// (zero: 64). It opens nothing until a pipe is asked for.
func NewPool(maxIdle int) *Pool {
	if maxIdle <= 0 {
		maxIdle = defaultMaxIdlePipes
	}
	return &Pool{
		maxIdle: maxIdle,
		bigSize: bigPipeSize,
		budget:  pipeBudget(),
		bufs: sync.Pool{New: func() any {
			b := make([]byte, copyBufferSize)
			return &b
		}},
	}
}

// getPipe returns an empty pipe, from the free list when it can.
// A nil pool makes a new default-size pipe each time.
func (p *Pool) getPipe() (*spliceBuf, error) {
	if p == nil {
		return newSpliceBuf(0)
	}
	p.mu.Lock()
	p.inUse++
	if n := len(p.free); n > 0 {
		sb := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return sb, nil
	}
	size := 0
	if p.bigSize > 0 && (p.budget < 0 || p.bigPages+pages(p.bigSize) <= p.budget) {
		size = p.bigSize
		p.bigPages += pages(size)
	}
	p.mu.Unlock()

	open := p.openPipe
	if open == nil {
		open = newSpliceBuf
	}
	sb, err := open(size)
	if err != nil || sb.big != size {
		p.mu.Lock()
		if size > 0 {
			p.bigPages -= pages(size)
			if err == nil {
				// The kernel refused the size: this user is near its
				// soft limit, so stop asking.
				p.budget = p.bigPages
			}
		}
		if err != nil {
			p.inUse--
		}
		p.mu.Unlock()
	}
	return sb, err
}

// putPipe takes back an empty pipe. A pipe that may still hold bytes must
// go to dropPipe instead.
func (p *Pool) putPipe(sb *spliceBuf) {
	if p == nil {
		sb.close()
		return
	}
	p.mu.Lock()
	p.inUse--
	if !p.closed && len(p.free) < p.maxIdle {
		p.free = append(p.free, sb)
		p.mu.Unlock()
		return
	}
	p.closePipeLocked(sb)
	p.mu.Unlock()
}

// dropPipe closes a pipe that may hold stale bytes.
func (p *Pool) dropPipe(sb *spliceBuf) {
	if p == nil {
		sb.close()
		return
	}
	p.mu.Lock()
	p.inUse--
	p.closePipeLocked(sb)
	p.mu.Unlock()
}

func (p *Pool) closePipeLocked(sb *spliceBuf) {
	p.bigPages -= pages(sb.big)
	sb.close()
}

func (p *Pool) getBuffer() *[]byte {
	if p == nil {
		b := make([]byte, copyBufferSize)
		return &b
	}
	return p.bufs.Get().(*[]byte)
}

// getBatch returns an empty buffer for a recordConn's batch.
func (p *Pool) getBatch() *[]byte {
	if p != nil {
		if b, ok := p.batches.Get().(*[]byte); ok {
			return b
		}
	}
	b := make([]byte, 0, tlsBatchSize)
	return &b
}

func (p *Pool) putBatch(b *[]byte) {
	if p != nil {
		p.batches.Put(b)
	}
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

// InUse reports how many pipes directions hold now: one per direction
// with bytes in flight, none for idle connections.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// parker returns the pool's parker, made on the first call; nil where
// directions cannot park (no epoll, or the pool is closed).
func (p *Pool) parker() *parker {
	p.parkOnce.Do(func() { p.pk, _ = newParker() })
	return p.pk
}

// holdFront returns the pool's front, started if none runs, and counts
// the caller as holding it until releaseFront; or why it cannot be (no
// epoll, out of descriptors, the pool closed). A failure is not kept:
// the next listener tries again.
func (p *Pool) holdFront() (*front, error) {
	p.frMu.Lock()
	defer p.frMu.Unlock()
	if p.frClosed {
		return nil, errors.New("forward: the pool is closed")
	}
	if p.fr == nil {
		f, err := newFront()
		if err != nil {
			return nil, err
		}
		p.fr = f
	}
	p.frHolders++
	return p.fr, nil
}

// releaseFront lets go of f, which holdFront returned. The holder must
// have left it: its listen sockets out of the loop and its connections
// ended there (handed to the engine or finished). The last holder stops
// the loop and waits for it; a command still posted to it (a listener's
// late stop) then finds it closed and does nothing.
func (p *Pool) releaseFront(f *front) {
	p.frMu.Lock()
	p.frHolders--
	last := p.frHolders == 0 && p.fr == f
	if last {
		p.fr = nil
	}
	p.frMu.Unlock()
	if last {
		f.close()
	}
}

// Parked reports how many directions are parked now: idle, holding no
// goroutine (see the package doc).
func (p *Pool) Parked() int64 {
	if pk := p.parker(); pk != nil {
		return pk.parked.Load()
	}
	return 0
}

// Close closes the idle pipes and the parker; pipes still in use are
// closed when they come back. Every forward using the pool must have ended
// (a direction parked then stays parked). It is idempotent.
func (p *Pool) Close() error {
	p.frMu.Lock()
	f := p.fr
	p.fr, p.frClosed = nil, true // no front from now on
	p.frMu.Unlock()
	if f != nil {
		f.close() // before the parker: it hands connections to it
	}
	p.parkOnce.Do(func() {}) // no parker from now on, if none yet
	if p.pk != nil {
		p.pk.close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sb := range p.free {
		p.closePipeLocked(sb)
	}
	p.free = nil
	p.closed = true
	return nil
}

// pages converts a pipe size in bytes to the pages the kernel accounts.
func pages(size int) int { return size / 4096 }
