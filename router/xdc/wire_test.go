package xdc

import (
	"context"
	"encoding/json"
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
	if got, err := DecodeApply(enc.V1()); err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("apply request as XA1: %v\n%#v", err, got)
	}
	if bin, binAnswer := isBinaryApply(enc.V1()); !bin || binAnswer {
		t.Fatalf("XA1 read as binary %v, binary answer %v", bin, binAnswer)
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
	if v, _ := a.repl.oldWire.Load(b.node); v != wireJSON {
		t.Fatalf("the sender noted the old receiver as %v, want JSON (%d)", v, wireJSON)
	}
	if _, ok := b.repl.oldWire.Load(a.node); ok {
		t.Fatal("the old receiver's sender fell back to an older form for a current node")
	}
}

// A destination node of a version before binary answers refuses a request asking for one
// ("XA2"): the sender falls back to the binary request it reads ("XA1", answered in JSON), not
// to JSON, and nothing is lost; between current nodes the answer is binary.
func TestShipFallsBackToV1ForAReceiverBeforeBinaryAnswers(t *testing.T) {
	_, dcs := startDCs(t, "a", "b")
	a, b := dcs[0], dcs[1]
	b.v1.Store(true)
	for i := 0; i < 50; i++ {
		a.write(t, "INCR", fmt.Sprintf("{k%d}n", i%5))
		b.write(t, "INCR", fmt.Sprintf("{k%d}m", i%5))
	}
	for i := 0; i < 5; i++ {
		for _, k := range []string{"n", "m"} {
			waitEqual(t, dcs, 10*time.Second, "counter", func(d *testDC) (string, error) {
				return d.rc.Get(context.Background(), fmt.Sprintf("{k%d}%s", i, k)).Result()
			}, "10")
		}
	}
	if v, _ := a.repl.oldWire.Load(b.node); v != wireV1 {
		t.Fatalf("the sender noted the receiver as %v, want the binary request with a JSON answer (%d)", v, wireV1)
	}
	if _, ok := b.repl.oldWire.Load(a.node); ok {
		t.Fatal("the receiver's own sender fell back for a current node")
	}
	// A current node answers "XA2" in binary and "XA1" in JSON (what a node before binary
	// answers reads).
	req := EncodeApply(ApplyRequest{Source: "b", Batches: []WireBatch{{Slot: 1}}})
	ctx := context.Background()
	if res, err := a.repl.RPC()[RPCApply](ctx, json.RawMessage(req)); err != nil {
		t.Fatal(err)
	} else if _, ok := res.(BinaryResults); !ok {
		t.Fatalf("XA2 answered as %T", res)
	}
	if res, err := a.repl.RPC()[RPCApply](ctx, json.RawMessage(req.V1())); err != nil {
		t.Fatal(err)
	} else if _, ok := res.(ApplyResponse); !ok {
		t.Fatalf("XA1 answered as %T", res)
	}
}

func TestBinaryResultsRoundTrip(t *testing.T) {
	in := ApplyResponse{Results: []ApplyResult{
		{Slot: 0, Last: ""},
		{Slot: 16383, Last: "1700000000000-12", Error: "TRYAGAIN slot \x00 copied", Gap: true},
		{Slot: 7, Last: "5-0", Gap: false},
	}}
	data := EncodeResults(in)
	var out ApplyResponse
	if err := out.SetPeerAnswer(data); err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %v\n%#v\n%#v", err, in, out)
	}
	var empty ApplyResponse
	if err := empty.SetPeerAnswer(EncodeResults(ApplyResponse{})); err != nil || len(empty.Results) != 0 {
		t.Fatalf("no results: %v %#v", err, empty)
	}
	// Every truncation is an error, and every corrupted byte an error or a parse: never a panic.
	for i := 0; i < len(data); i++ {
		var r ApplyResponse
		if err := r.SetPeerAnswer(data[:i]); err == nil {
			t.Fatalf("truncated at %d of %d: no error", i, len(data))
		}
		for _, b := range []byte{0, 1, 2, 0x7f, 0xff} {
			bad := append([]byte(nil), data...)
			bad[i] = b
			_ = r.SetPeerAnswer(bad)
		}
	}
	var r ApplyResponse
	if err := r.SetPeerAnswer(append(data, 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
	if err := r.SetPeerAnswer([]byte("XR1\xff\xff\xff\xff\xff\xff\xff\xff\x7f")); err == nil {
		t.Fatal("huge count: no error")
	}
}
