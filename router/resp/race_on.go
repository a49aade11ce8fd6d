//go:build race

package resp

// raceEnabled reports a build with the race detector (see Writer).
const raceEnabled = true
