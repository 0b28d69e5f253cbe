package main

import (
	"errors"
	"fmt"
	"time"
)

// scenario is one kind of traffic the bench pushes through every forwarder.
type scenario interface {
	name() string
	metrics() []metric
	// setup starts the scenario's backends and returns the routes every
	// forwarder must offer.
	setup(e *env) ([]route, error)
	// teardown stops the backends.
	teardown()
	// skip says why a forwarder sits this scenario out ("" = it runs).
	skip(fwd string) string
	// fresh asks for forwarders started anew before each run, for figures
	// (memory) that a previous run would distort.
	fresh() bool
	// measure runs once through the instance and returns a value per metric
	// key. An errIntegrity error means something arrived wrong or not at all;
	// the figures that could be taken may come with it.
	measure(e *env, in *instance) (map[string]float64, error)
}

// jointMeasurer is a scenario with figures taken through every forwarder
// at once, after each run's turns of measure: ins are the live instances
// in the run's turn order, and the results come back in the same order,
// a value per metric key or why that forwarder failed (statusRTTs says
// why round trips are taken so).
type jointMeasurer interface {
	measureJoint(e *env, ins []*instance) ([]map[string]float64, []error)
}

// metric is one row of the table.
type metric struct {
	key           string
	label         string
	unit          string
	higher        bool // higher is better
	forwarderOnly bool // a property of the forwarder process: direct has no figure
	noRatio       bool // ratios mean nothing here (a loss of 0 %)
	digits        int  // decimals shown
}

// errIntegrity marks a measurement whose bytes or datagrams did not arrive
// intact; it makes the bench's exit status non-zero for the relay.
var errIntegrity = errors.New("integrity check failed")

// integrityf returns an error wrapping errIntegrity.
func integrityf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errIntegrity, fmt.Sprintf(format, args...))
}

// scale is how long and how big the measurements are.
type scale struct {
	runs        int
	window      time.Duration // one throughput or rate measurement
	idleConns   int
	ftpFileSize int     // bytes of the large FTP download
	rawSamples  int     // round trips per raw measurement
	checkBytes  int     // bytes of each SHA-256 integrity transfer
	udpRate     float64 // offered rate of the paced UDP run, bits per second
}

func quickScale() scale {
	return scale{runs: 1, window: 500 * time.Millisecond, idleConns: 2000,
		ftpFileSize: 32 << 20, rawSamples: 1000, checkBytes: 4 << 20, udpRate: 500e6}
}

func defaultScale() scale {
	return scale{runs: 3, window: 2 * time.Second, idleConns: 10000,
		ftpFileSize: 256 << 20, rawSamples: 5000, checkBytes: 32 << 20, udpRate: 500e6}
}

// allScenarios is every scenario in table order.
func allScenarios() []scenario {
	return []scenario{
		&tcpThroughput{},
		&tcpConnRate{},
		&tcpIdle{},
		&udpScenario{},
		&ftpScenario{},
		&rawScenario{},
		&tunnelScenario{},
	}
}
