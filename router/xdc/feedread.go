package xdc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/router/resp"
)

// feedConn is a shipping loop's own connection for following the change feed: plain RESP2
// without go-redis. Flat out, go-redis spent 12 % of the shipping node's CPU on the feed's
// XREAD (a RESP3 map, an interface and a string per field, its push-notification check per
// reply: docs/replication.md, session 17); here each entry's fields become substrings of one
// string, and the reply is read as it arrives with nothing in between. (resp.ReadReply and
// resp.Parse would read it too, but make a Value per field and allocate a bulk string's
// declared length before reading it; the feed's reply has one shape, read here with bounds.)
type feedConn struct {
	nc      net.Conn
	br      *bufio.Reader // reads with raw system calls (resp.RawReader)
	w       io.Writer     // writes with raw system calls (resp.Writer)
	out     []byte
	scratch []byte // one entry's field bytes, before they become its one string
	offs    []int  // the fields' ends in scratch
	readBuf []byte // the bulk string being read
}

// feedBlock is how long one XREAD of the feed blocks on the master (ms).
const feedBlock = 2000

// The most a feed reply may hold, so that a reply out of all proportion (a server that is not
// Redis, a corrupted stream) is an error and never an allocation of its declared size: a feed
// entry carries at most feedDataMax bytes of effects besides a few short fields.
const (
	maxFeedFields = 1 << 16
	maxFeedBulk   = 64 << 20
)

// dialFeed opens a feed connection to src's server and database, with src's dialer and
// credentials (AUTH and SELECT in one round trip).
func dialFeed(ctx context.Context, src *redis.Client) (*feedConn, error) {
	o := src.Options()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var nc net.Conn
	var err error
	if o.Dialer != nil {
		nc, err = o.Dialer(dctx, "tcp", o.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", o.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("change feed: dial %s: %w", o.Addr, err)
	}
	c := &feedConn{nc: nc, br: bufio.NewReaderSize(resp.RawReader(nc), 64<<10), w: resp.Writer(nc)}
	n := 0
	if o.Password != "" {
		if o.Username != "" {
			c.cmd("AUTH", o.Username, o.Password)
		} else {
			c.cmd("AUTH", o.Password)
		}
		n++
	}
	if o.DB != 0 {
		c.cmd("SELECT", strconv.Itoa(o.DB))
		n++
	}
	if n > 0 {
		if err := c.send(5 * time.Second); err != nil {
			c.close()
			return nil, err
		}
		for range n {
			if err := c.readStatus(); err != nil {
				c.close()
				// The error names the command's failure, never the credentials.
				return nil, fmt.Errorf("change feed: %s: %w", o.Addr, err)
			}
		}
	}
	return c, nil
}

func (c *feedConn) close() { _ = c.nc.Close() }

// cmd appends a command in RESP to the output buffer.
func (c *feedConn) cmd(args ...string) {
	c.out = resp.AppendArray(c.out, len(args))
	for _, a := range args {
		c.out = resp.AppendBulkString(c.out, a)
	}
}

// send writes the queued commands and sets the deadline for their replies.
func (c *feedConn) send(wait time.Duration) error {
	if err := c.nc.SetDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	_, err := c.w.Write(c.out)
	c.out = c.out[:0]
	return err
}

// xread runs one blocking XREAD of the feed after pos and returns its entries (none when the
// block ran out). The read gives up when ctx ends.
func (c *feedConn) xread(ctx context.Context, pos string) ([]feedMessage, error) {
	return c.xreadStream(ctx, DirtyKey, dirtyCount, feedBlock, pos)
}

// xreadStream runs one blocking XREAD of stream key after pos, at most count entries, blocking
// up to block ms (a group's log is read so too: shiplog.go).
func (c *feedConn) xreadStream(ctx context.Context, key string, count, block int, pos string) ([]feedMessage, error) {
	msgs, _, err := c.xreadKept(ctx, key, count, block, pos, false)
	return msgs, err
}

// xreadKept is xreadStream that, with check, also reports whether pos was still in the stream
// once the read was done (XRANGE pos pos, in the same round trip, after the XREAD), for a
// stream trimmed from its head only (a group's log: XTRIM MINID and XADD's MAXLEN). When it
// was, no entry after pos was trimmed before the read, which returned them in order from pos
// on; when it was not, the read may have skipped entries trimmed after pos. pos must then be
// an entry's id. Without check, kept is true.
func (c *feedConn) xreadKept(ctx context.Context, key string, count, block int, pos string, check bool) (msgs []feedMessage, kept bool, err error) {
	c.cmd("XREAD", "COUNT", strconv.Itoa(count), "BLOCK", strconv.Itoa(block), "STREAMS", key, pos)
	if check {
		c.cmd("XRANGE", key, pos, pos, "COUNT", "1")
	}
	if err := c.send(time.Duration(block)*time.Millisecond + 5*time.Second); err != nil {
		return nil, false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if msgs, err = c.readXRead(count); err != nil || !check {
		return msgs, err == nil, err
	}
	n, err := c.header('*')
	if err != nil {
		return nil, false, err
	}
	for range max(n, 0) {
		if _, err := c.entry(); err != nil {
			return nil, false, err
		}
	}
	return msgs, n > 0, nil
}

// readXRead reads the reply to an XREAD of one stream, at most count entries.
func (c *feedConn) readXRead(count int) ([]feedMessage, error) {
	n, err := c.header('*')
	if err != nil || n <= 0 {
		return nil, err // n < 0: nothing written for the block's time
	}
	if n > 16 {
		return nil, fmt.Errorf("change feed: reply of %d streams", n)
	}
	for s := range n { // one stream was asked for; skip any other
		if k, err := c.header('*'); err != nil || k != 2 {
			return nil, errOr(err, "stream reply of %d elements", k)
		}
		if _, err := c.bulk(); err != nil { // the stream's name
			return nil, err
		}
		m, err := c.header('*')
		if err != nil {
			return nil, err
		}
		if m > count {
			return nil, fmt.Errorf("change feed: %d entries for a read of %d", m, count)
		}
		var out []feedMessage
		if s == 0 {
			out = make([]feedMessage, 0, max(m, 0))
		}
		for range m {
			msg, err := c.entry()
			if err != nil {
				return nil, err
			}
			if s == 0 {
				out = append(out, msg)
			}
		}
		if s == n-1 {
			return out, nil
		}
	}
	return nil, nil
}

// entry reads one stream entry, [id, [field, value, ...]]: its fields become substrings of
// one string.
func (c *feedConn) entry() (feedMessage, error) {
	if k, err := c.header('*'); err != nil || k != 2 {
		return feedMessage{}, errOr(err, "entry of %d elements", k)
	}
	idb, err := c.bulk()
	if err != nil {
		return feedMessage{}, err
	}
	id := string(idb) // before the next read reuses the bytes
	nf, err := c.header('*')
	if err != nil {
		return feedMessage{}, err
	}
	if nf > maxFeedFields {
		return feedMessage{}, fmt.Errorf("change feed: entry of %d fields", nf)
	}
	c.scratch, c.offs = c.scratch[:0], c.offs[:0]
	for range max(nf, 0) {
		b, err := c.bulk()
		if err != nil {
			return feedMessage{}, err
		}
		c.scratch = append(c.scratch, b...)
		c.offs = append(c.offs, len(c.scratch))
	}
	all := string(c.scratch)
	m := feedMessage{id: id, fields: make([]string, len(c.offs))}
	lo := 0
	for i, hi := range c.offs {
		m.fields[i] = all[lo:hi]
		lo = hi
	}
	return m, nil
}

// header reads a reply's first line, which must be of the kind want (or an error reply), and
// returns its number (-1 for a null).
func (c *feedConn) header(want byte) (int, error) {
	line, err := c.line()
	if err != nil {
		return 0, err
	}
	if line[0] == '-' {
		return 0, replyError(line[1:])
	}
	if line[0] != want {
		return 0, fmt.Errorf("change feed: unexpected reply %q", truncate(line, 40))
	}
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < -1 {
		return 0, fmt.Errorf("change feed: bad length %q", truncate(line, 40))
	}
	return n, nil
}

// bulk reads a bulk string; the bytes are valid until the next read.
func (c *feedConn) bulk() ([]byte, error) {
	n, err := c.header('$')
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	if n > maxFeedBulk {
		return nil, fmt.Errorf("change feed: bulk string of %d bytes", n)
	}
	if cap(c.readBuf) < n+2 {
		c.readBuf = make([]byte, n+2)
	}
	b := c.readBuf[:n+2]
	if _, err := io.ReadFull(c.br, b); err != nil {
		return nil, err
	}
	return b[:n], nil
}

// readStatus reads a simple-string reply (+OK), or returns its error.
func (c *feedConn) readStatus() error {
	line, err := c.line()
	if err != nil {
		return err
	}
	switch line[0] {
	case '+':
		return nil
	case '-':
		return replyError(line[1:])
	}
	return fmt.Errorf("unexpected reply %q", truncate(line, 40))
}

// line reads one CRLF-terminated line, without the CRLF; valid until the next read.
func (c *feedConn) line() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("change feed: reply line too long")
		}
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("change feed: malformed reply line %q", truncate(line, 40))
	}
	return line[:len(line)-2], nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func errOr(err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("change feed: "+format, args...)
}

// replyError is an error reply of the server, as it said it.
type replyError string

func (e replyError) Error() string { return string(e) }
