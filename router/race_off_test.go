//go:build !race

package router

// raceBuild is set in a build with the race detector.
const raceBuild = false
