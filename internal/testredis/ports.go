package testredis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports handed to servers that bind them later must not come from the kernel's ephemeral
// range: a port picked by listening on :0 and closed again is the next one an outgoing
// connection of any process may take, and the server then fails with "address already in
// use" (seen once in CI on a node's peer port). Ports below the range are never given to
// outgoing connections, so only another listener can take one, and this process hands each
// out at most once.
var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that is free now and outside the ephemeral range.
func FreePort() (int, error) { return FreePortOn("127.0.0.1") }

// FreePortOn returns a TCP port nobody listens on right now on any of the given IPs, outside
// the kernel's ephemeral port range and not handed out before by this process.
func FreePortOn(ips ...string) (int, error) {
	if len(ips) == 0 {
		return 0, errors.New("testredis: FreePortOn needs an IP")
	}
	lo, hi := 10000, ephemeralLow()
	if hi-lo < 1000 {
		return 0, fmt.Errorf("testredis: the ephemeral port range starts at %d, leaving no room below it", hi)
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for try := 0; try < 1000; try++ {
		port := lo + rand.IntN(hi-lo)
		if given[port] || !bindable(port, ips) {
			continue
		}
		given[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("testredis: no free port in %d-%d after 1000 tries", lo, hi-1)
}

// bindable reports whether port can be listened on at every IP now.
func bindable(port int, ips []string) bool {
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's default 32768 when
// it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}
