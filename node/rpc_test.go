package node

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// rawBytes is a RawRequest: CallPeer posts its bytes as they are.
type rawBytes []byte

func (r rawBytes) PeerBody() []byte { return r }

// rawAnswer is a RawAnswer: it keeps the bytes of a raw answer, and decodes a JSON one.
type rawAnswer struct {
	raw  []byte
	json int
}

func (a *rawAnswer) SetPeerAnswer(data []byte) error {
	a.raw = append([]byte(nil), data...)
	return nil
}
func (a *rawAnswer) UnmarshalJSON(data []byte) error { return json.Unmarshal(data, &a.json) }

// A RawRequest reaches the extra RPC's handler byte for byte (binary, not JSON), over the same
// authenticated peer connection as any call: without the cluster secret it is refused.
func TestCallPeerRawRequest(t *testing.T) {
	cfg := Config{ID: "n1", DC: "dc1", ClusterSecret: testSecret}
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(t), "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(t.TempDir(), "n1")
	got := make(chan []byte, 2)
	n, err := Start(cfg, Options{Logger: quietOpts().Logger, LogOutput: quietOpts().LogOutput, RPC: map[string]RPCFunc{
		"echo": func(_ context.Context, body json.RawMessage) (any, error) {
			got <- append([]byte(nil), body...)
			return len(body), nil
		},
		"mirror": func(_ context.Context, body json.RawMessage) (any, error) {
			return rawBytes(append([]byte(nil), body...)), nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitReady(t, n)
	body := []byte("XA1\x00\xff\x01 not JSON \"{")
	var size int
	if err := n.CallPeer(context.Background(), n.PeerAddr(), "echo", rawBytes(body), &size); err != nil || size != len(body) {
		t.Fatalf("raw call: %d %v", size, err)
	}
	if b := <-got; !bytes.Equal(b, body) {
		t.Fatalf("the handler got %q, want %q", b, body)
	}
	// A handler's RawRequest answer comes back byte for byte to a RawAnswer; a JSON answer to
	// a RawAnswer is decoded as JSON.
	var mirrored rawAnswer
	if err := n.CallPeer(context.Background(), n.PeerAddr(), "mirror", rawBytes(body), &mirrored); err != nil || !bytes.Equal(mirrored.raw, body) {
		t.Fatalf("raw answer: %q %v", mirrored.raw, err)
	}
	var sized rawAnswer
	if err := n.CallPeer(context.Background(), n.PeerAddr(), "echo", rawBytes(body), &sized); err != nil || sized.raw != nil || sized.json != len(body) {
		t.Fatalf("JSON answer to a RawAnswer: %+v %v", sized, err)
	}
	<-got
	lg := quietOpts().Logger
	if lg == nil { // -v: the default logger
		lg = slog.Default()
	}
	wrong := newPeerClient(peerDialer{auth: newPeerAuth(testBadSecret, lg)})
	if err := wrong.call(context.Background(), n.PeerAddr(), rpcExtra+"echo", rawBytes(body), nil); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("raw call with a wrong secret: %v", err)
	}
	select {
	case b := <-got:
		t.Fatalf("the handler ran for a caller without the secret: %q", b)
	default:
	}
}

// TestReadBodyRefusesOversize: a body over the limit is an error, not a body cut to the limit
// (which its reader then failed to decode, again at every retry).
func TestReadBodyRefusesOversize(t *testing.T) {
	body := strings.Repeat("x", 100)
	if b, err := readBody(strings.NewReader(body), 100, 100); err != nil || len(b) != 100 {
		t.Fatalf("at the limit: %d bytes, %v", len(b), err)
	}
	for _, length := range []int64{100, -1} { // declared, or not
		if b, err := readBody(strings.NewReader(body), length, 99); err == nil {
			t.Fatalf("length %d over the limit: %d bytes, no error", length, len(b))
		}
	}
	if b, err := readBody(strings.NewReader(body), -1, 100); err != nil || len(b) != 100 {
		t.Fatalf("undeclared, at the limit: %d bytes, %v", len(b), err)
	}
}
