package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestDescribeGolden prints each testdata/*.yaml resolved and compares it
// with testdata/*.golden; go test ./config -run Golden -update rewrites them.
func TestDescribeGolden(t *testing.T) {
	configs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(configs) < 3 {
		t.Fatalf("testdata configs: %q, %v", configs, err)
	}
	for _, path := range configs {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(LoadOptions{Path: path, Environ: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := cfg.Describe(&got); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("Describe differs from %s (run with -update if intended):\n--- got\n%s\n--- want\n%s", golden, got.Bytes(), want)
			}
		})
	}
}

// The folding of per-port tables back into ranges must not merge what is
// not one run.
func TestMappingFolds(t *testing.T) {
	l := Listener{
		Listen: []string{"0.0.0.0:1", "0.0.0.0:2", "0.0.0.0:3", "0.0.0.0:5", "10.0.0.1:6", "10.0.0.1:7"},
		Upstreams: [][]string{
			{"a:10", "b:20"}, {"a:11", "b:20"}, {"a:13", "b:20"}, // a jumps at port 3
			{"a:14", "b:20"},                   // listen gap 3 -> 5
			{"a:15", "b:20"}, {"a:16", "c:20"}, // host change
		},
	}
	want := []string{
		"0.0.0.0:1-2 -> a:10-11, then b:20",
		"0.0.0.0:3 -> a:13, then b:20",
		"0.0.0.0:5 -> a:14, then b:20",
		"10.0.0.1:6 -> a:15, then b:20",
		"10.0.0.1:7 -> a:16, then c:20",
	}
	got := l.mapping()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("mapping:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
