package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// folderWatch reports the changes of the files in the folders it watches,
// for Watch to decide when a save is over. It reads inotify itself rather
// than through fsnotify: Watch must tell a file still being written
// (IN_MODIFY, its writer holding it open) from a finished one
// (IN_CLOSE_WRITE), and fsnotify 1.9 keeps its close-write op unexported.
type folderWatch struct {
	f       *os.File // the inotify descriptor, in Go's poller: Close ends a blocked Read
	rc      syscall.RawConn
	changes chan fileChange // closed when read returns
	errs    chan error
	closing chan struct{} // closed by Close: read gives up
	done    chan struct{} // closed when read has returned
	once    sync.Once

	mu   sync.Mutex       // guards the following
	dirs map[int32]string // watch descriptor → folder
}

// fileChange is one change of a file in a watched folder.
type fileChange struct {
	name string // the file's path, in the folder as it was added
	op   changeOp
}

// changeOp says what happened to a file, as far as Watch cares.
type changeOp uint8

const (
	opChange  changeOp = iota // changed in one step: its attributes
	opWrite                   // written, or created empty, by a writer that may still hold it open
	opClose                   // a writer that held it open for writing closed it
	opReplace                 // the name names another file now, or none: renamed into place or away, removed, linked
	opLost                    // changes were lost (the kernel's queue overflowed); name is empty
)

// folderEvents are the events Watch needs of the files in a folder.
const folderEvents = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_ATTRIB |
	unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ONLYDIR

// startFolderWatch opens an inotify instance and starts reading it.
func startFolderWatch() (*folderWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &folderWatch{f: f, rc: rc, changes: make(chan fileChange), errs: make(chan error),
		closing: make(chan struct{}), done: make(chan struct{}), dirs: make(map[int32]string)}
	go w.read()
	return w, nil
}

// Add watches the files in dir. Adding a folder again changes nothing.
func (w *folderWatch) Add(dir string) error {
	var wd int
	var err error
	w.mu.Lock() // before the first event of wd can be looked up
	defer w.mu.Unlock()
	if cerr := w.rc.Control(func(fd uintptr) { wd, err = unix.InotifyAddWatch(int(fd), dir, folderEvents) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	w.dirs[int32(wd)] = dir
	return nil
}

// Close ends the watch and waits for its reader. It is idempotent.
func (w *folderWatch) Close() error {
	var err error
	w.once.Do(func() {
		close(w.closing)
		err = w.f.Close()
	})
	<-w.done
	return err
}

// read reports the events of the inotify descriptor until Close.
func (w *folderWatch) read() {
	defer close(w.done)
	defer close(w.changes)
	// Room for many events at once: the kernel never splits one, and a
	// name is at most NAME_MAX bytes.
	buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				select {
				case w.errs <- fmt.Errorf("read inotify: %w", err):
				case <-w.closing:
				}
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			size := int(binary.NativeEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent
			name := strings.TrimRight(string(buf[off:min(off+size, n)]), "\x00")
			off += size
			if c, ok := w.change(wd, mask, name); ok {
				select {
				case w.changes <- c:
				case <-w.closing:
					return
				}
			}
		}
	}
}

// change translates one event; false: it is none of Watch's business (an
// event of a folder itself).
func (w *folderWatch) change(wd int32, mask uint32, name string) (fileChange, bool) {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		return fileChange{op: opLost}, true
	}
	w.mu.Lock()
	dir, ok := w.dirs[wd]
	if mask&unix.IN_IGNORED != 0 {
		delete(w.dirs, wd) // the folder is gone; Add watches a new one
	}
	w.mu.Unlock()
	if !ok || name == "" {
		return fileChange{}, false
	}
	path := filepath.Join(dir, name)
	op := opChange // IN_ATTRIB
	switch {
	case mask&unix.IN_CLOSE_WRITE != 0:
		op = opClose
	case mask&unix.IN_MODIFY != 0:
		op = opWrite
	case mask&(unix.IN_MOVED_TO|unix.IN_MOVED_FROM|unix.IN_DELETE) != 0:
		op = opReplace
	case mask&unix.IN_CREATE != 0:
		op = created(path)
	}
	return fileChange{name: path, op: op}, true
}

// created tells a file created to be written (by open: empty, one name; its
// close follows) from one that arrived whole (linked in with its content, a
// symlink, a folder), which no close follows. A file created and written at
// once is whole here, but each of its writes is an IN_MODIFY after this
// event.
func created(path string) changeOp {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1 && st.Size == 0 {
		return opWrite
	}
	return opReplace
}
