// Package integration tests the built redraft binary with real redis-server processes and real nodes on loopback.
package integration
