//go:build !race

package integration

// raceOn is false: this test binary was built without -race, so the redraft binary is too
// (the long `make chaos` runs, which want throughput more than a race report).
const raceOn = false
