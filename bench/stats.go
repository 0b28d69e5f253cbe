package main

import (
	"math"
	"slices"
	"time"
)

// summary is the median and spread of one forwarder's runs.
type summary struct {
	median, min, max float64
	n                int
}

func summarize(vals []float64) summary {
	if len(vals) == 0 {
		return summary{median: math.NaN()}
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{median: m, min: s[0], max: s[len(s)-1], n: len(s)}
}

// spread is (max-min)/median: how far apart the runs were.
func (s summary) spread() float64 {
	if s.n < 2 || s.median == 0 {
		return 0
	}
	return (s.max - s.min) / math.Abs(s.median)
}

// advantage is how far the relay is ahead of other on a metric: above 1 the
// relay is better, below 1 it is behind, whichever way the metric points.
func advantage(m metric, relay, other float64) float64 {
	if m.higher {
		return relay / other
	}
	return other / relay
}

// percentile returns the p-th percentile (0..100) of sorted durations,
// nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
