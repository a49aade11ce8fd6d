package router

import (
	"bufio"
	"net"
	"testing"

	"github.com/redraft/redraft/router/resp"
)

// benchRoundTrips sends n requests of raw per round trip and reads the replies, b.N times.
func benchRoundTrips(b *testing.B, raw []byte, n int) {
	b.Helper()
	benchOn(b, startCluster(b, 2, 1, Config{}), raw, n)
}

// benchOn is benchRoundTrips on tc's first node.
func benchOn(b *testing.B, tc *testCluster, raw []byte, n int) {
	b.Helper()
	nc, err := net.Dial("tcp", tc.addrs[0])
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	var batch []byte
	for i := 0; i < n; i++ {
		batch = append(batch, raw...)
	}
	br := bufio.NewReaderSize(nc, 1<<16)
	var reply []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := nc.Write(batch); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < n; j++ {
			if reply, err = resp.ReadReply(br, reply[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkGet(b *testing.B) {
	benchRoundTrips(b, []byte("*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"), 1)
}

func BenchmarkGetPipeline16(b *testing.B) {
	benchRoundTrips(b, []byte("*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"), 16)
}

func BenchmarkSet(b *testing.B) {
	benchRoundTrips(b, []byte("*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"), 1)
}

// BenchmarkSetTwoDCsPipeline16 is SET through WRITE (two DCs), 16 per round trip.
func BenchmarkSetTwoDCsPipeline16(b *testing.B) {
	benchOn(b, startXDC(b, 2, Config{}), []byte("*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"), 16)
}

func BenchmarkMGetTwoGroups(b *testing.B) {
	benchRoundTrips(b, []byte("*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n"), 1)
}

// BenchmarkAdmitSlot is the in-flight accounting a keyed request pays when no migration is
// active: count, load the snapshot, check the entry, uncount.
func BenchmarkAdmitSlot(b *testing.B) {
	s := New(Config{DC: "dc1"})
	defer s.Close()
	s.SetState(newState(b, []string{"127.0.0.1:1", "127.0.0.1:2"}, nil))
	c := &client{s: s}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.one[0] = uint16(i & (1<<14 - 1))
		if _, _, err := c.admit(c.one[:]); err != nil {
			b.Fatal(err)
		}
		c.unadmit(0)
	}
}
