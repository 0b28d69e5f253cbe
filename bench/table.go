package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// writeTable prints every scenario's medians as one Markdown table, the
// relay first, then direct, the relay's ratio to direct, then one column per
// peer found on this machine.
func writeTable(w io.Writer, results []*scenarioResult, peers []string, runs int) {
	header := []string{"scenario", "metric", "relay", "direct", "relay vs direct"}
	header = append(header, peers...)
	rows := [][]string{header}
	for _, res := range results {
		for _, m := range res.Metrics {
			rows = append(rows, tableRow(res, m, peers))
		}
	}
	fmt.Fprintf(w, "Medians of %d run(s), ±spread = (max−min)/median. A ratio (×) above 1 means the relay is ahead,\n", runs)
	fmt.Fprintf(w, "whichever way the metric points; a peer cell shows its figure and the relay's ratio to it.\n\n")
	writeAligned(w, rows)
	writeNotes(w, results)
	for _, res := range results {
		if len(res.Failures) > 0 {
			fmt.Fprintln(w, "\nFAIL: data lost or corrupted; *: some runs failed, the figure is from the others.")
			break
		}
	}
}

// tableRow formats one metric of one scenario.
func tableRow(res *scenarioResult, m metric, peers []string) []string {
	relay := summarize(res.Values[m.key]["relay"])
	row := []string{res.Name, m.label + unitSuffix(m), cell(res, m, "relay"), cell(res, m, "direct"), ""}
	direct := summarize(res.Values[m.key]["direct"])
	if !m.forwarderOnly && !m.noRatio && relay.n > 0 && direct.n > 0 {
		row[4] = fmt.Sprintf("%.2f×", advantage(m, relay.median, direct.median))
	} else {
		row[4] = "–"
	}
	for _, p := range peers {
		c := cell(res, m, p)
		if s := summarize(res.Values[m.key][p]); !m.noRatio && s.n > 0 && relay.n > 0 {
			c += fmt.Sprintf(" (%.2f×)", advantage(m, relay.median, s.median))
		}
		row = append(row, c)
	}
	return row
}

func unitSuffix(m metric) string {
	if m.unit == "" {
		return ""
	}
	return ", " + m.unit
}

// cell formats a forwarder's median and spread, or why there is none.
func cell(res *scenarioResult, m metric, fwd string) string {
	if fwd == "direct" && m.forwarderOnly {
		return "–"
	}
	if _, ok := res.Skipped[fwd]; ok {
		return "n/a"
	}
	s := summarize(res.Values[m.key][fwd])
	failed, integrity := res.failed(fwd)
	if s.n == 0 {
		if integrity {
			return "FAIL"
		}
		if failed {
			return "error"
		}
		return "–"
	}
	c := formatValue(s.median, m.digits)
	switch {
	case s.n > 1 && m.noRatio:
		c += fmt.Sprintf(" (%s–%s)", formatValue(s.min, m.digits), formatValue(s.max, m.digits))
	case s.n > 1:
		c += fmt.Sprintf(" ±%.0f%%", 100*s.spread())
	}
	if integrity {
		c += " FAIL"
	} else if failed {
		c += " *"
	}
	return c
}

// formatValue prints v with digits decimals and thousands separators.
func formatValue(v float64, digits int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := fmt.Sprintf("%.*f", digits, v)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteRune(' ')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// writeAligned prints rows as a Markdown table padded to column width.
func writeAligned(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range r {
			pad := width[i] - len([]rune(c))
			if i >= 2 {
				fmt.Fprintf(&b, " %s%s |", strings.Repeat(" ", pad), c)
			} else {
				fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", pad))
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i, n := range width {
		if i >= 2 {
			sep[i] = strings.Repeat("-", n-1) + ":"
		} else {
			sep[i] = strings.Repeat("-", n)
		}
	}
	line(sep)
	for _, r := range rows[1:] {
		line(r)
	}
}

// writeNotes explains the n/a cells and lists every failure.
func writeNotes(w io.Writer, results []*scenarioResult) {
	var notes []string
	for _, res := range results {
		notes = append(notes, skipNotes(res)...)
		notes = append(notes, failureNotes(res)...)
	}
	if len(notes) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, "- "+n)
	}
}

// failureNotes lists the failures, once per forwarder and message, with
// the runs it happened in.
func failureNotes(res *scenarioResult) []string {
	type key struct{ fwd, msg string }
	var order []key
	runs := map[key][]string{}
	integrity := map[key]bool{}
	for _, f := range res.Failures {
		k := key{f.Forwarder, strings.ReplaceAll(f.Err, "\n", "; ")}
		if runs[k] == nil {
			order = append(order, k)
		}
		runs[k] = append(runs[k], fmt.Sprint(f.Run))
		integrity[k] = integrity[k] || f.Integrity
	}
	var notes []string
	for _, k := range order {
		mark := "error"
		if integrity[k] {
			mark = "FAIL"
		}
		notes = append(notes, fmt.Sprintf("%s: %s in %s, run %s: %s", mark, k.fwd, res.Name,
			strings.Join(runs[k], ", "), k.msg))
	}
	return notes
}

// skipNotes says once per reason which forwarders sat a scenario out.
func skipNotes(res *scenarioResult) []string {
	var reasons []string
	who := map[string][]string{}
	for _, fwd := range append([]string{"relay", "direct"}, peerNames()...) {
		why, ok := res.Skipped[fwd]
		if !ok {
			continue
		}
		if who[why] == nil {
			reasons = append(reasons, why)
		}
		who[why] = append(who[why], fwd)
	}
	var notes []string
	for _, why := range reasons {
		notes = append(notes, fmt.Sprintf("n/a: %s in %s: %s", strings.Join(who[why], ", "), res.Name, why))
	}
	return notes
}
