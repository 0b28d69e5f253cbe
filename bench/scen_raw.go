package main

// rawScenario is the ticket-printer path: one client asks for the printer's
// status again and again; each round trip is timed.
type rawScenario struct {
	printer *tcpServer
}

func (*rawScenario) name() string { return "raw" }

func (*rawScenario) metrics() []metric {
	return []metric{
		{key: "p50", label: "status round trip, median", unit: "µs", digits: 1},
		{key: "p99", label: "status round trip, p99", unit: "µs", digits: 1},
	}
}

func (r *rawScenario) setup(*env) ([]route, error) {
	var err error
	if r.printer, err = listenTCP(printer); err != nil {
		return nil, err
	}
	return []route{{name: "printer", mode: "raw", upstream: r.printer.addr()}}, nil
}

func (r *rawScenario) teardown()        { r.printer.close() }
func (*rawScenario) skip(string) string { return "" }
func (*rawScenario) fresh() bool        { return false }

// measure has nothing to do on its own: the round trips are timed
// through every forwarder at once (measureJoint).
func (r *rawScenario) measure(*env, *instance) (map[string]float64, error) {
	return map[string]float64{}, nil
}

func (r *rawScenario) measureJoint(e *env, ins []*instance) ([]map[string]float64, []error) {
	targets := make([]rttTarget, len(ins))
	for i, in := range ins {
		targets[i] = rttTarget{addr: in.addr("printer")}
	}
	return statusRTTs(targets, e.scale.rawSamples)
}
