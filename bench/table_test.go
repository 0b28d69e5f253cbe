package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestWriteTable(t *testing.T) {
	res := &scenarioResult{
		Name: "udp",
		Metrics: []metric{
			{key: "kpps", label: "received", unit: "k/s", higher: true, digits: 0},
			{key: "loss", label: "loss", unit: "%", digits: 1, noRatio: true},
		},
		Values: map[string]map[string][]float64{
			"kpps": {"relay": {200, 210, 190}, "direct": {400, 400, 400}, "socat": {100, 100, 100}, "rinetd": {50}},
			"loss": {"relay": {0, 4, 0.5}, "direct": {0, 0, 0}, "socat": {60, 70, 65}, "rinetd": {70}},
		},
		Skipped: map[string]string{"haproxy": "no UDP proxying"},
	}
	bad := integrityf("1 zero-length datagrams arrived")
	res.fail("rinetd", 2, bad)
	res.fail("rinetd", 3, bad)
	res.fail("socat", 1, fmt.Errorf("send: %w", errors.New("refused")))
	var b strings.Builder
	writeTable(&b, []*scenarioResult{res}, []string{"haproxy", "socat", "rinetd"}, 3)
	out := b.String()
	rows := tableCells(out)
	wantRows := map[string][]string{
		"received, k/s": {"udp", "received, k/s", "200 ±10%", "400 ±0%", "0.50×", "n/a", "100 ±0% * (2.00×)", "50 FAIL (4.00×)"},
		"loss, %":       {"udp", "loss, %", "0.5 (0.0–4.0)", "0.0 (0.0–0.0)", "–", "n/a", "65.0 (60.0–70.0) *", "70.0 FAIL"},
	}
	for metric, want := range wantRows {
		if got := rows[metric]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("row %q:\n got %q\nwant %q", metric, got, want)
		}
	}
	for _, want := range []string{
		"- n/a: haproxy in udp: no UDP proxying",
		"- FAIL: rinetd in udp, run 2, 3: integrity check failed: 1 zero-length datagrams arrived",
		"- error: socat in udp, run 1: send: refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if got := exitStatus([]*scenarioResult{res}); got != 0 {
		t.Errorf("exit status %d for peer failures only, want 0", got)
	}
	res.fail("relay", 1, bad)
	if got := exitStatus([]*scenarioResult{res}); got != 1 {
		t.Errorf("exit status %d with a relay failure, want 1", got)
	}
}

// tableCells maps each table row's metric cell to the row's trimmed cells.
func tableCells(out string) map[string][]string {
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		if len(cells) > 1 {
			rows[cells[1]] = cells
		}
	}
	return rows
}
