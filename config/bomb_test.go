package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// aliasBomb is a 1.5 KB file whose nine levels of aliases expand to 9^9
// (387 million) values.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for c := 'b'; c <= 'i'; c++ {
		prev := string(c - 1)
		fmt.Fprintf(&b, "x-%c: &%c [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n",
			c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	b.WriteString(minimal)
	return b.String()
}

// TestAliasBombRefusedFast: Load refuses the bomb with one error naming the
// bound, in bounded time and memory (it took over 20 s and 1.2 GiB).
func TestAliasBombRefusedFast(t *testing.T) {
	path := writeConfig(t, aliasBomb())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Load(LoadOptions{Path: path, Environ: []string{}})
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Msg, "aliases expand to more than") {
		t.Fatalf("error %v, want one error about alias expansion", err)
	}
	if !strings.HasPrefix(es[0].Where, path+":") {
		t.Errorf("error at %q, want a line of %s", es[0].Where, path)
	}
	if took > 2*time.Second {
		t.Errorf("took %v, want well under 2s", took)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("allocated %d MiB, want under 64", alloc>>20)
	}
}

// TestAliasesWithinBoundLoad: anchors and merge keys of ordinary size work.
func TestAliasesWithinBoundLoad(t *testing.T) {
	var b strings.Builder
	b.WriteString("listeners:\n  - &l {name: l0, mode: tcp, listen: \"127.0.0.1:10000\", upstream: \"10.0.0.5:80\", connect_timeout: 2s}\n")
	for i := 1; i < 500; i++ {
		fmt.Fprintf(&b, "  - {<<: *l, name: l%d, listen: \"127.0.0.1:%d\"}\n", i, 10000+i)
	}
	cfg, err := parseString(t, b.String())
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Listeners[499]; l.ConnectTimeout != 2*time.Second || l.Upstreams[0][0] != "10.0.0.5:80" {
		t.Errorf("merged listener: %+v", l)
	}
}

func TestAliasToItselfRefused(t *testing.T) {
	_, err := parseString(t, "x: &a [1, *a]\n"+minimal)
	if want := "t.yaml:1: YAML: an alias refers to the value it is part of"; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}

// TestLargeFileRefused: a file over the size limit is refused before it is
// parsed, naming its size and the limit.
func TestLargeFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	big := minimal + "# " + strings.Repeat("x", maxFileSize) + "\n"
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(LoadOptions{Path: path, Environ: []string{}})
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v, want the file named and the 1 MiB limit", err)
	}
	_, err = Parse(strings.NewReader(big), "big.yaml")
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Fatalf("Parse: error %v, want the 1 MiB limit", err)
	}
}
