//go:build race

package integration

// raceOn tells TestMain to build the redraft binary with the race detector, as this test
// binary was.
const raceOn = true
