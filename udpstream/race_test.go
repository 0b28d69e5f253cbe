//go:build race

package udpstream

const raceEnabled = true
