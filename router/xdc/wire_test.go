package xdc

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestBinaryBatchesRoundTrip(t *testing.T) {
	in := []WireBatch{
		{Slot: 0, Prev: "", Entries: []WireEntry{{ID: "1-0"}}},
		{Slot: 16383, Prev: "5-1", Entries: []WireEntry{
			{ID: "6-0", TS: "123.4", Cmds: WireCmds{{"SET", "k", "v\x00\xff binary"}, {"~d", "x"}}},
			{ID: "7-0", Cmds: WireCmds{{"DEL", string(make([]byte, 300))}}},
		}},
	}
	data := EncodeBatches(in)
	out, err := DecodeBatches(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n%#v\n%#v", in, out)
	}
	// Every truncation, and every single corrupted byte, is an error or a parse: never a panic.
	for i := 0; i < len(data); i++ {
		if _, err := DecodeBatches(data[:i]); err == nil {
			t.Fatalf("truncated at %d of %d: no error", i, len(data))
		}
		for _, b := range []byte{0, 0x7f, 0xff} {
			bad := append([]byte(nil), data...)
			bad[i] = b
			_, _ = DecodeBatches(bad)
		}
	}
	if _, err := DecodeBatches(append(data, 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
	if _, err := DecodeBatches([]byte("XB1\xff\xff\xff\xff\xff\xff\xff\xff\x7f")); err == nil {
		t.Fatal("huge count: no error")
	}
	req := ApplyRequest{Source: "dc1", DB: 3, Batches: in}
	enc := EncodeApply(req)
	got, err := DecodeApply(enc)
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("apply request round trip: %v\n%#v\n%#v", err, req, got)
	}
	for i := 0; i < len(enc); i++ {
		if _, err := DecodeApply(enc[:i]); err == nil {
			t.Fatalf("apply request truncated at %d of %d: no error", i, len(enc))
		}
	}
}

// A destination node of a version before the binary form refuses it (JSON only): the sender
// falls back to the JSON form for it, and nothing is lost.
func TestShipFallsBackToJSONForAnOldReceiver(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a, b := dcs[0], dcs[1]
	b.old.Store(true)
	for i := 0; i < 50; i++ {
		a.write(t, "INCR", fmt.Sprintf("{k%d}n", i%5))
	}
	for i := 0; i < 5; i++ {
		waitEqual(t, dcs, 10*time.Second, "counter", func(d *testDC) (string, error) {
			return d.rc.Get(context.Background(), fmt.Sprintf("{k%d}n", i)).Result()
		}, "10")
	}
	if _, ok := a.repl.jsonOnly.Load(b.node); !ok {
		t.Fatal("the sender did not note the old receiver")
	}
	if _, ok := b.repl.jsonOnly.Load(a.node); ok {
		t.Fatal("the old receiver's sender fell back to JSON for a current node")
	}
}
