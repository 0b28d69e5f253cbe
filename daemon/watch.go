package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/edgerelay/relay/config"
)

// Watch reports changes to the files the config in force names (the config
// file, its ACL file, TLS certificates and keys; after a reload that read a
// config and failed, that config's too) on the returned channel, after debounce of quiet,
// so that an editor's save (write, rename, chmod) is one reload. The folders
// are watched rather than the files, because editors replace a file by
// renaming a new one over it. A pending change is held, never queued twice.
//
// On Linux a file written in place is reported only once its writer has
// closed it, however long the writer pauses in between (an admin's
// cat > relay.yaml, a slow copy, a tool that writes in two steps): a pause
// past debounce would otherwise apply the part written so far, which may
// parse, and drop what the rest names. A file renamed into place, removed
// or linked counts at once, as does a change of its attributes. Off Linux
// there is no close event to wait for: the quiet period alone ends a save.
// The watch ends with the daemon (Shutdown or Close).
func (d *Daemon) Watch(debounce time.Duration) (<-chan struct{}, error) {
	w, err := startFolderWatch()
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	if err := watchDirs(w, d.watched()); err != nil {
		w.Close()
		return nil, err
	}
	out := make(chan struct{}, 1)
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		w.Close()
		return nil, fmt.Errorf("watch config: %w", ErrStopped)
	}
	d.serving.Add(1) // under mu, so Shutdown's Wait cannot miss it
	d.mu.Unlock()
	d.watch.set(w, d.watched())
	go d.watchLoop(w, debounce, out)
	return out, nil
}

// watched lists the files whose change should reload the daemon: the
// config, its ACL, and the certificates, keys and CAs its TLS listeners
// name (a renewed certificate takes effect without a SIGHUP), and for
// each that is a symlink, the file it points to.
func (d *Daemon) watched() []string { return watchedFiles(d.Config()) }

// watchedFiles lists the files of cfg that watched lists for the config in
// force.
func watchedFiles(cfg *config.Config) []string {
	files := []string{cfg.Path}
	if acl := cfg.ACLPath; acl != "" {
		files = append(files, acl)
	}
	for _, l := range cfg.Listeners {
		if t := l.TLS; t != nil {
			files = appendSet(files, t.Cert, t.Key, t.ClientCA)
		}
		if u := l.UpstreamTLS; u != nil {
			files = appendSet(files, u.CA, u.Cert, u.Key)
		}
	}
	for i, f := range files {
		if abs, err := filepath.Abs(f); err == nil {
			files[i] = abs
		}
	}
	// A file that is a symlink changes where it points: watch the target
	// too (a save there is no event in the link's folder).
	for _, f := range files {
		if real, err := filepath.EvalSymlinks(f); err == nil {
			files = appendSet(files, real)
		}
	}
	return files
}

// appendSet appends the non-empty names not in files yet.
func appendSet(files []string, names ...string) []string {
	for _, n := range names {
		if n != "" && !slices.Contains(files, n) {
			files = append(files, n)
		}
	}
	return files
}

func watchDirs(w *folderWatch, files []string) error {
	for _, f := range files {
		if err := w.Add(filepath.Dir(f)); err != nil {
			return fmt.Errorf("watch %s: %w", filepath.Dir(f), err)
		}
	}
	return nil
}

func (d *Daemon) watchLoop(w *folderWatch, debounce time.Duration, out chan<- struct{}) {
	defer d.serving.Done()
	defer w.Close()
	defer d.watch.set(nil, nil) // before Close: a reload's follow must not add to a closed watcher
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	open := make(map[string]bool) // watched files a writer holds open
	told := false                 // that the report waits for a writer
	for {
		select {
		case <-d.done:
			return
		case c, ok := <-w.changes:
			if !ok {
				d.log.Warn().Msg("config watch ended; reload with SIGHUP")
				return
			}
			if noteChange(c, open, d.watch.list()) {
				quiet.Reset(debounce)
			}
		case err := <-w.errs:
			d.log.Warn().Err(err).Msg("config watch")
		case <-quiet.C:
			if name := stillOpen(open, d.watch.list()); name != "" {
				if !told {
					d.log.Info().Str("file", name).
						Msg("config watch: a file is still open for writing; reloading once it is closed")
					told = true
				}
				continue // its close is a change, and starts the quiet period again
			}
			told = false
			select {
			case out <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}
}

// noteChange records c in open, the watched files a writer holds open, and
// reports whether c changed a watched file (or may have).
func noteChange(c fileChange, open map[string]bool, files []string) bool {
	if c.op == opLost {
		clear(open) // their closes may be among the events lost
		return true
	}
	if !isWatched(c.name, files) {
		return false
	}
	switch c.op {
	case opWrite:
		open[c.name] = true
	case opClose, opReplace:
		delete(open, c.name)
	}
	return true
}

// stillOpen returns a file of open that is still watched, or "".
func stillOpen(open map[string]bool, files []string) string {
	for name := range open {
		if slices.Contains(files, name) {
			return name
		}
	}
	return ""
}

func isWatched(name string, files []string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		return false
	}
	for _, f := range files {
		if f == abs {
			return true
		}
	}
	return false
}

// configWatch is the watcher of Watch and the files it reports, shared
// with Reload: a reload that loads a config naming an ACL file or
// certificate in another folder adds that folder before it returns, so the
// file's next save is seen. It does so as soon as the YAML is read, before
// the reload can fail: a config saved before the new ACL file exists fails
// to load the ACL, and the file's creation must then be seen to reload
// again. (The watch loop cannot do it when it reports a change: the
// reload has not run yet.)
type configWatch struct {
	mu    sync.Mutex   // guards the following
	w     *folderWatch // nil: no watch, or it has ended
	files []string     // the files whose change is reported
}

func (c *configWatch) set(w *folderWatch, files []string) {
	c.mu.Lock()
	c.w, c.files = w, files
	c.mu.Unlock()
}

func (c *configWatch) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files
}

// follow reports changes of files from now on and watches their folders,
// when a watch runs.
func (c *configWatch) follow(files []string, log zerolog.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w == nil {
		return
	}
	c.files = files
	if err := watchDirs(c.w, files); err != nil {
		log.Warn().Err(err).Msg("config watch")
	}
}
