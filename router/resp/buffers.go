package resp

import "sync"

// BufSize is the size of the pooled I/O buffers: a client connection's read buffer while it
// has bytes to parse, and its reply buffer while it has replies to write (16 KiB, Redis's
// PROTO_IOBUF_LEN).
const BufSize = 16 << 10

// bufs holds idle I/O buffers. Connections take one when data arrives and give it back once
// it is consumed, so an idle connection holds none and busy ones reuse a few warm buffers.
var bufs = sync.Pool{New: func() any {
	b := make([]byte, BufSize)
	return &b
}}

// GetBuf returns a pooled buffer of BufSize bytes (its length is BufSize).
func GetBuf() *[]byte { return bufs.Get().(*[]byte) }

// PutBuf gives back a buffer from GetBuf; the caller must hold no other reference to it.
func PutBuf(b *[]byte) {
	if cap(*b) != BufSize {
		return
	}
	*b = (*b)[:BufSize]
	bufs.Put(b)
}
