package main

import (
	"bufio"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"time"
)

// machine describes where the figures were taken.
type machine struct {
	Cores  int    `json:"cores"`
	CPU    string `json:"cpu"`
	Kernel string `json:"kernel"`
	OS     string `json:"os"`
	Go     string `json:"go"`
}

func describeMachine() machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.CPU = fileField("/proc/cpuinfo", "model name", ":")
	m.OS = strings.Trim(fileField("/etc/os-release", "PRETTY_NAME", "="), `"`)
	return m
}

// loadAverage is the 1-minute load average: how busy the shared machine
// was around the run.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// fileField returns the value of the first "key<sep>value" line of a file.
func fileField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// jsonReport is what -json writes.
type jsonReport struct {
	Started   time.Time         `json:"started"`
	Command   string            `json:"command"`
	Machine   machine           `json:"machine"`
	Runs      int               `json:"runs"`
	Window    string            `json:"window"`
	Versions  map[string]string `json:"versions"` // relay and peers: version, or why a peer is missing
	Scenarios []jsonScenario    `json:"scenarios"`
}

type jsonScenario struct {
	Name     string            `json:"name"`
	Metrics  []jsonMetric      `json:"metrics"`
	Skipped  map[string]string `json:"skipped,omitempty"`
	Failures []failure         `json:"failures,omitempty"`
}

type jsonMetric struct {
	Key            string               `json:"key"`
	Label          string               `json:"label"`
	Unit           string               `json:"unit"`
	HigherIsBetter bool                 `json:"higher_is_better"`
	Runs           map[string][]float64 `json:"runs"`   // forwarder -> value per run
	Median         map[string]float64   `json:"median"` // forwarder -> median
}

// writeJSON writes the full results, every run's value included.
func writeJSON(path string, rep jsonReport, results []*scenarioResult) error {
	for _, res := range results {
		js := jsonScenario{Name: res.Name, Skipped: res.Skipped, Failures: res.Failures}
		for _, m := range res.Metrics {
			jm := jsonMetric{Key: m.key, Label: m.label, Unit: m.unit, HigherIsBetter: m.higher,
				Runs: res.Values[m.key], Median: map[string]float64{}}
			for fwd, vals := range res.Values[m.key] {
				jm.Median[fwd] = summarize(vals).median
			}
			js.Metrics = append(js.Metrics, jm)
		}
		rep.Scenarios = append(rep.Scenarios, js)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
