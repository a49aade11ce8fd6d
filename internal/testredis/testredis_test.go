package testredis

import (
	"net"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t, WithArgs("--databases", "4"))
	if err := ping(s.Addr); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Fatal("server still accepting after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := ping(s.Addr); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}
