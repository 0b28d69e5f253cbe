package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// writePlots writes one SVG chart per scenario into dir (-plots): for each
// metric, a bar per forwarder (relay, direct, then the peers) at its median,
// with a whisker from its worst run to its best, so the spread shows beside
// the difference.
func writePlots(dir string, results []*scenarioResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, res := range results {
		if len(res.Metrics) == 0 {
			continue
		}
		path := filepath.Join(dir, res.Name+".svg")
		if err := writeScenarioPlot(path, res); err != nil {
			return fmt.Errorf("plot %s: %w", res.Name, err)
		}
	}
	return nil
}

// The relay's bar stands out in blue; direct and the peers share a grey.
// Every bar is named below it, so colour is never the only cue.
var (
	relayColor = color.RGBA{R: 0x4a, G: 0x8b, B: 0xdf, A: 0xff}
	otherColor = color.RGBA{R: 0xaf, G: 0xb8, B: 0xc1, A: 0xff}
)

// plotSize is one metric's chart; a scenario's charts are stacked.
const plotWidth, plotHeight = 16 * vg.Centimeter, 6 * vg.Centimeter

func writeScenarioPlot(path string, res *scenarioResult) error {
	var rows [][]*plot.Plot
	for _, m := range res.Metrics {
		p, err := metricPlot(res, m)
		if err != nil {
			return err
		}
		if p != nil {
			rows = append(rows, []*plot.Plot{p})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	canvas := vgsvg.New(plotWidth, plotHeight*vg.Length(len(rows)))
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadY: vg.Centimeter / 2, PadTop: vg.Centimeter / 4}
	dc := draw.New(canvas)
	for i, row := range plot.Align(rows, tiles, dc) {
		rows[i][0].Draw(row[0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := canvas.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// metricPlot is one metric's bars; nil when no forwarder has a value.
func metricPlot(res *scenarioResult, m metric) (*plot.Plot, error) {
	var names []string
	var medians plotter.Values
	var spread plotter.YErrors
	for _, fwd := range plotOrder(res.Values[m.key]) {
		s := summarize(res.Values[m.key][fwd])
		if math.IsNaN(s.median) {
			continue
		}
		names = append(names, fwd)
		medians = append(medians, s.median)
		spread = append(spread, struct{ Low, High float64 }{s.median - s.min, s.max - s.median})
	}
	if len(names) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = res.Name + ": " + m.label
	better := "lower is better"
	if m.higher {
		better = "higher is better"
	}
	p.Y.Label.Text = m.unit + " (" + better + ")"
	p.Y.Min = 0
	for i, v := range medians {
		bar, err := plotter.NewBarChart(plotter.Values{v}, vg.Points(28))
		if err != nil {
			return nil, err
		}
		bar.XMin = float64(i)
		bar.LineStyle.Width = 0
		bar.Color = otherColor
		if names[i] == "relay" {
			bar.Color = relayColor
		}
		p.Add(bar)
	}
	whiskers := &plotter.YErrorBars{XYs: barXYs(medians), YErrors: spread, LineStyle: plotter.DefaultLineStyle, CapWidth: vg.Points(10)}
	whiskers.LineStyle.Width = vg.Points(1.5)
	p.Add(whiskers)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.NominalX(names...)
	return p, nil
}

// barXYs places each bar's whisker on it.
func barXYs(vals plotter.Values) plotter.XYs {
	xys := make(plotter.XYs, len(vals))
	for i, v := range vals {
		xys[i].X, xys[i].Y = float64(i), v
	}
	return xys
}

// plotOrder is relay, direct, then the peers by name.
func plotOrder(byFwd map[string][]float64) []string {
	var peers []string
	for fwd := range byFwd {
		if fwd != "relay" && fwd != "direct" {
			peers = append(peers, fwd)
		}
	}
	slices.Sort(peers)
	return append([]string{"relay", "direct"}, peers...)
}
