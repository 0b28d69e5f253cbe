package main

import (
	"errors"
	"fmt"
	"slices"
)

// scenarioResult is what one scenario measured, per metric and forwarder.
type scenarioResult struct {
	Name     string                          `json:"name"`
	Metrics  []metric                        `json:"-"`
	Values   map[string]map[string][]float64 `json:"values"`  // metric key -> forwarder -> one value per run
	Skipped  map[string]string               `json:"skipped"` // forwarder -> why it sat out
	Failures []failure                       `json:"failures"`
}

// failure is a measurement that went wrong.
type failure struct {
	Forwarder string `json:"forwarder"`
	Run       int    `json:"run"`
	Integrity bool   `json:"integrity"`
	Err       string `json:"error"`
}

// failed reports whether the forwarder failed at least once.
func (r *scenarioResult) failed(fwd string) (failed, integrity bool) {
	for _, f := range r.Failures {
		if f.Forwarder == fwd {
			failed = true
			integrity = integrity || f.Integrity
		}
	}
	return failed, integrity
}

func (r *scenarioResult) fail(fwd string, run int, err error) {
	r.Failures = append(r.Failures, failure{
		Forwarder: fwd, Run: run, Integrity: errors.Is(err, errIntegrity), Err: err.Error(),
	})
}

// runScenario starts the scenario's backends, then measures every
// forwarder in turn, run after run (A B C C B A …, turnOrder), so that
// drift in a shared, noisy machine spreads over all columns instead of one.
func runScenario(e *env, sc scenario, fwds []forwarder, prog *progress) *scenarioResult {
	res := &scenarioResult{
		Name:   sc.name(),
		Values: map[string]map[string][]float64{}, Skipped: map[string]string{},
	}
	prog.show(sc.name(), "starting backends", 0)
	routes, err := sc.setup(e)
	if err != nil {
		res.fail("bench", 0, fmt.Errorf("backends: %w", err))
		return res
	}
	defer sc.teardown()
	res.Metrics = sc.metrics() // after setup: labels may name the scale
	active := activeForwarders(sc, fwds, routes, res)
	instances := map[string]*instance{}
	defer func() {
		for _, in := range instances {
			in.stop()
		}
	}()
	for run := 1; run <= e.scale.runs; run++ {
		for _, f := range turnOrder(active, run) {
			in, err := instanceFor(e, sc, f, routes, instances)
			if err != nil {
				res.fail(f.name(), run, fmt.Errorf("start: %w", err))
				continue
			}
			prog.show(sc.name(), f.name(), run)
			vals, err := sc.measure(e, in)
			if err == nil {
				err = in.alive()
			}
			if err != nil {
				res.fail(f.name(), run, err)
			}
			res.add(f.name(), vals)
		}
		if jm, ok := sc.(jointMeasurer); ok {
			measureJoint(e, jm, turnOrder(active, run), instances, res, run, prog, sc.name())
		}
	}
	return res
}

// add records one run's figures of a forwarder.
func (r *scenarioResult) add(fwd string, vals map[string]float64) {
	for k, v := range vals { // figures may come with a failed check
		if r.Values[k] == nil {
			r.Values[k] = map[string][]float64{}
		}
		r.Values[k][fwd] = append(r.Values[k][fwd], v)
	}
}

// measureJoint runs a jointMeasurer through the forwarders of the run
// whose instance is up.
func measureJoint(e *env, jm jointMeasurer, order []forwarder, instances map[string]*instance, res *scenarioResult, run int, prog *progress, scName string) {
	var ins []*instance
	var names []string
	for _, f := range order {
		if in := instances[f.name()]; in != nil && in.alive() == nil {
			ins, names = append(ins, in), append(names, f.name())
		}
	}
	if len(ins) == 0 {
		return
	}
	prog.show(scName, "all forwarders in turns", run)
	vals, errs := jm.measureJoint(e, ins)
	for i, name := range names {
		if errs[i] != nil {
			res.fail(name, run, errs[i])
		}
		res.add(name, vals[i])
	}
}

// turnOrder is the order the forwarders take turns in a run: as given in
// odd runs, reversed in even ones (A B C, C B A, A B C …), so that a
// machine getting busier or quieter over the runs favours none of them.
func turnOrder(fwds []forwarder, run int) []forwarder {
	if run%2 == 1 {
		return fwds
	}
	rev := slices.Clone(fwds)
	slices.Reverse(rev)
	return rev
}

// activeForwarders drops the forwarders the scenario skips or that cannot
// carry one of its routes, and records why.
func activeForwarders(sc scenario, fwds []forwarder, routes []route, res *scenarioResult) []forwarder {
	var active []forwarder
	for _, f := range fwds {
		why := sc.skip(skipAs(f))
		for _, r := range routes {
			if why == "" {
				why = f.unsupported(r.mode)
			}
		}
		if why != "" {
			res.Skipped[f.name()] = why
			continue
		}
		active = append(active, f)
	}
	return active
}

// skipAs is the name a scenario's skip is asked with: a baseline relay
// sits out what the relay sits out.
func skipAs(f forwarder) string {
	if _, ok := f.(relayFwd); ok {
		return "relay"
	}
	return f.name()
}

// instanceFor returns the running instance of f, starting it when there is
// none, when the previous one died, or when the scenario wants a fresh one.
func instanceFor(e *env, sc scenario, f forwarder, routes []route, instances map[string]*instance) (*instance, error) {
	in := instances[f.name()]
	if in != nil && !sc.fresh() && in.alive() == nil {
		return in, nil
	}
	if in != nil {
		in.stop()
		delete(instances, f.name())
	}
	in, err := f.start(e, routes)
	if err != nil {
		return nil, err
	}
	instances[f.name()] = in
	return in, nil
}
