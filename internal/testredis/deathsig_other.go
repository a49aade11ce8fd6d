//go:build !linux

package testredis

import "os/exec"

// DieWithParent does nothing where the OS has no parent-death signal.
func DieWithParent(*exec.Cmd) {}
