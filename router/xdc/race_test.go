//go:build race

package xdc

const raceEnabled = true
