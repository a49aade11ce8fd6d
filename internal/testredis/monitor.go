package testredis

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// Monitor opens a MONITOR connection to the server at addr, closed when the test ends, and
// returns the reader of the lines it prints (each command the server runs, as MONITOR quotes
// it) and the connection (for read deadlines).
func Monitor(t testing.TB, addr string) (*bufio.Reader, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write([]byte("*1\r\n$7\r\nMONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	mon := bufio.NewReader(conn)
	if l, err := mon.ReadString('\n'); err != nil || l != "+OK\r\n" {
		t.Fatalf("MONITOR: %q, %v", l, err)
	}
	return mon, conn
}
