// Package backend holds redraft's connections to Redis servers: shared, pipelined connections
// that batch many clients' requests into one write and match replies in order, and dedicated
// connections for blocking commands, transactions and pub/sub.
package backend

import (
	"sync/atomic"
)

// Waiter wakes one client goroutine when any of its requests completes. It never allocates:
// completions set a flag on the request and post a token to a one-slot channel.
type Waiter struct {
	ch chan struct{}
}

// NewWaiter returns a Waiter.
func NewWaiter() *Waiter { return &Waiter{ch: make(chan struct{}, 1)} }

// Wait blocks until r has completed.
func (w *Waiter) Wait(r *Request) {
	for r.st.Load() != stDone {
		<-w.ch
	}
}

// The states of a Request.
const (
	stPending   uint32 = iota // sent, no reply yet
	stDone                    // completed: Reply or Err is set
	stDelivered               // armed: the reader hands the reply to the Deliverer
)

// Deliverer takes a request's reply on the connection's reader goroutine (Request.Arm).
type Deliverer interface {
	// Deliver is given the request once its reply (or Err) is set. It returns true when it is
	// done with the request; false when it handed the request on, to be Completed later.
	Deliver(r *Request) bool
}

// Request is one command sent on a shared connection and its reply. A Request is owned by one
// client; it may be reused after it completed.
type Request struct {
	// Reply holds the raw reply bytes once done (for N replies, the last one).
	Reply []byte
	// Err is set when the request failed before a reply arrived.
	Err error

	n      int // replies still expected
	st     atomic.Uint32
	waiter *Waiter
	dl     Deliverer
}

// NewRequest returns a Request that signals w when it completes.
func NewRequest(w *Waiter) *Request { return &Request{waiter: w} }

// Reset prepares the request for another command that expects n replies (n >= 1); when n > 1
// only the last reply is kept (a MULTI ... EXEC block).
func (r *Request) Reset(n int) {
	if cap(r.Reply) > 64<<10 {
		r.Reply = nil
	}
	r.Reply = r.Reply[:0]
	r.Err = nil
	r.n = n
	r.st.Store(stPending)
}

// Done reports whether the request has completed.
func (r *Request) Done() bool { return r.st.Load() == stDone }

// Arm hands the request's reply to d, on the reader goroutine, instead of leaving it for the
// owner to collect: the reply is delivered as soon as it is read, without a wake-up of the
// owner's goroutine. It returns false when the reply is already there (the owner collects
// it, as without Arm). An armed request counts as done once d is done with it (Deliver
// returns true, or Complete).
func (r *Request) Arm(d Deliverer) bool {
	r.dl = d
	return r.st.CompareAndSwap(stPending, stDelivered)
}

// Complete marks a request whose Deliverer handed it on as done.
func (r *Request) Complete() {
	r.dl = nil
	r.st.Store(stDone)
	r.signal()
}

func (r *Request) finish() {
	if !r.st.CompareAndSwap(stPending, stDone) {
		// Armed: Arm's CompareAndSwap published dl.
		if !r.dl.Deliver(r) {
			return
		}
		r.dl = nil
		r.st.Store(stDone)
	}
	r.signal()
}

func (r *Request) signal() {
	select {
	case r.waiter.ch <- struct{}{}:
	default:
	}
}

func (r *Request) fail(err error) {
	r.Err = err
	r.finish()
}

// queue is a FIFO of requests awaiting replies.
type queue struct {
	buf        []*Request
	head, size int
}

func (q *queue) push(r *Request) {
	if q.size == len(q.buf) {
		nb := make([]*Request, max(16, 2*len(q.buf)))
		for i := 0; i < q.size; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = r
	q.size++
}

func (q *queue) peek() *Request {
	if q.size == 0 {
		return nil
	}
	return q.buf[q.head]
}

func (q *queue) pop() *Request {
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return r
}
