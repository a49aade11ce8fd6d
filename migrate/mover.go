// Package migrate moves a slot's keys between groups on stock Redis: on access, in batches, and big values in chunks.
package migrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrKeyBusy means another mover holds a key's lock (it is copying the key in chunks) and it
// was not released within Config.LockWait. It is retryable: the router answers -TRYAGAIN.
var ErrKeyBusy = errors.New("migrate: key is being moved by another mover, try again")

// Endpoint is a Redis master: its address and credentials.
type Endpoint struct {
	// Addr is host:port.
	Addr string
	// Username is the ACL user (empty: the default user).
	Username string
	// Password is the AUTH password (empty: none).
	Password string
	// Dialer, when set, dials the server for go-redis (EndpointOf's creates redraft's ACL
	// users when the server refuses them).
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

// String shows the endpoint with its password as "set" or "unset", never the value.
func (e Endpoint) String() string {
	pw := "unset"
	if e.Password != "" {
		pw = "set"
	}
	return fmt.Sprintf("{Addr:%s Username:%s Password:%s}", e.Addr, e.Username, pw)
}

// Config configures a Mover; zero fields take the defaults listed on each.
type Config struct {
	// Source is the group master keys move out of.
	Source Endpoint
	// Target is the group master keys move into.
	Target Endpoint
	// Owner names this mover in lock values (for example the node id); default "redraft".
	Owner string
	// KeepTarget makes a key that both the source and the target hold keep the target's copy
	// (the source's is deleted) instead of the source's replacing it: set after the source
	// group failed over (fsm.State.SourceFailedOver), when the promoted replica may still hold
	// keys moved before, which clients may have written on the target since (DESIGN.md).
	KeepTarget bool
	// Fence is the migration run this mover acts for (FenceField); every step it takes on
	// Redis first checks, in the same script, that the run is not recorded over there (empty:
	// no check, for the library's own tests).
	Fence string
	// BigKeyElements: a hash, set, zset, list or stream with more elements is copied in chunks
	// (default 10000).
	BigKeyElements int64
	// BigKeyBytes: a key whose MEMORY USAGE is larger is copied in chunks (default 8 MiB).
	BigKeyBytes int64
	// ChunkElements is the most elements read and written per chunk (default 1000).
	ChunkElements int
	// ChunkBytes bounds a chunk's size: string ranges, and the element count of collections
	// with large elements (default 512 KiB).
	ChunkBytes int
	// BatchKeys is the most keys per batch copy of MoveKeys (default 100, at most 1000).
	BatchKeys int
	// BatchBytes bounds the bytes of the keys one batch copy of MoveKeys takes, so that the
	// source is never blocked long (default 4 MiB).
	BatchBytes int64
	// LockTTL is the TTL of a big key's lock; the holder extends it on every chunk (default 5s).
	LockTTL time.Duration
	// LockWait is how long MoveKeys waits for another mover's lock before ErrKeyBusy
	// (default 2s).
	LockWait time.Duration
	// DialTimeout is the connect timeout (default 2s).
	DialTimeout time.Duration
	// IOTimeout is the read and write timeout of one command (default 5s); reads get
	// readSlack more.
	IOTimeout time.Duration
	// PoolSize is the connection pool size per server and db (default 16).
	PoolSize int
	// KnownKeys bounds the keys per run and db that the movers of this process remember as off
	// the source, so MoveKeys skips the round trip for them (known.go; default 1,048,576, about
	// 100 MB at most for long keys; -1: none).
	KnownKeys int
	// Logger receives the mover's logs (default: discarded).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.BigKeyElements, 10000)
	def(&c.BigKeyBytes, 8<<20)
	def(&c.BatchBytes, 4<<20)
	defInt(&c.ChunkElements, 1000)
	defInt(&c.ChunkBytes, 512<<10)
	defInt(&c.BatchKeys, 100)
	c.BatchKeys = min(c.BatchKeys, maxBatchKeys)
	defInt(&c.PoolSize, 16)
	if c.KnownKeys == 0 {
		c.KnownKeys = 1 << 20
	}
	defDur(&c.LockTTL, 5*time.Second)
	defDur(&c.LockWait, 2*time.Second)
	defDur(&c.DialTimeout, 2*time.Second)
	defDur(&c.IOTimeout, 5*time.Second)
	if c.Owner == "" {
		c.Owner = "redraft"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// readSlack is added to IOTimeout for a reply: a script on a busy source may run a while
// (it used to be MIGRATE's timeout, when the source sent small keys to the target itself).
const readSlack = 2 * time.Second

// Mover moves keys from a source Redis to a target Redis. It is safe for concurrent use: the
// router calls MoveKeys on the request path while the slot owner runs MoveSlots.
type Mover struct {
	cfg        Config
	log        *slog.Logger
	mu         sync.Mutex
	src, dst   map[int]*redis.Client // per db
	rsrc, rdst map[int]*rawPool      // per db: the batch copy's connections (resp.go)
	combiners  map[int]*combiner     // per db: migrate-on-access rounds (combine.go)
	closed     bool
	knownDB    sync.Map // db -> *knownSet of this Mover's run (known.go)
}

// New returns a Mover for cfg. It does not connect until used.
func New(cfg Config) (*Mover, error) {
	cfg.setDefaults()
	if cfg.Source.Addr == "" || cfg.Target.Addr == "" {
		return nil, errors.New("migrate: source and target addresses are required")
	}
	for _, a := range []string{cfg.Source.Addr, cfg.Target.Addr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("migrate: address %q: %w", a, err)
		}
	}
	m := &Mover{cfg: cfg, log: cfg.Logger,
		src: map[int]*redis.Client{}, dst: map[int]*redis.Client{}, combiners: map[int]*combiner{},
		rsrc: map[int]*rawPool{}, rdst: map[int]*rawPool{}}
	m.openKnown()
	return m, nil
}

// Close closes the Mover's connections.
func (m *Mover) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closeKnown()
	}
	m.closed = true
	var first error
	for _, pool := range []map[int]*redis.Client{m.src, m.dst} {
		for db, c := range pool {
			if err := c.Close(); err != nil && first == nil {
				first = err
			}
			delete(pool, db)
		}
	}
	for _, pool := range []map[int]*rawPool{m.rsrc, m.rdst} {
		for db, p := range pool {
			p.close()
			delete(pool, db)
		}
	}
	return first
}

// newClient returns a go-redis client for one server and db. Retries are off: a write retried
// after an I/O error could apply twice (RPUSH, XADD); the move is retried whole instead.
func newClient(e Endpoint, db int, cfg *Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: e.Addr, Username: e.Username, Password: e.Password, DB: db, Dialer: e.Dialer,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: cfg.DialTimeout, ReadTimeout: cfg.IOTimeout + readSlack,
		WriteTimeout: cfg.IOTimeout, PoolSize: cfg.PoolSize, ContextTimeoutEnabled: true,
	})
}

// usableLocked reports why db cannot be served (the mover closed, a bad db); called with
// m.mu held.
func (m *Mover) usableLocked(db int) error {
	if m.closed {
		return errors.New("migrate: mover closed")
	}
	if db < 0 {
		return fmt.Errorf("migrate: bad db %d", db)
	}
	return nil
}

// clients returns the source and target clients for db.
func (m *Mover) clients(db int) (src, dst *redis.Client, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usableLocked(db); err != nil {
		return nil, nil, err
	}
	if m.src[db] == nil {
		m.src[db] = newClient(m.cfg.Source, db, &m.cfg)
		m.dst[db] = newClient(m.cfg.Target, db, &m.cfg)
	}
	return m.src[db], m.dst[db], nil
}

// raws returns the source and target raw connection pools for db (the batch copy's).
func (m *Mover) raws(db int) (src, dst *rawPool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.usableLocked(db); err != nil {
		return nil, nil, err
	}
	if m.rsrc[db] == nil {
		m.rsrc[db] = newRawPool(m.cfg.Source, db, &m.cfg)
		m.rdst[db] = newRawPool(m.cfg.Target, db, &m.cfg)
	}
	return m.rsrc[db], m.rdst[db], nil
}

// MoveKeys makes sure each key is on the target and not on the source, one key at a time
// atomically: a reader or writer on any node that calls MoveKeys before touching a key never
// sees a partial or stale value. Keys missing from the source (already moved, or never there)
// are fine. Small keys move by batch copies (many per call: copy.go); big ones, and keys another
// mover held, by a chunked copy under a lock on the source. It returns how many keys it moved, and ErrKeyBusy (wrapped) when another
// mover held a key's lock past Config.LockWait.
func (m *Mover) MoveKeys(ctx context.Context, db int, keys ...string) (moved int, err error) {
	moved, _, err = m.moveKeys(ctx, db, keys)
	return moved, err
}

// moveKeys is MoveKeys that also reports the MEMORY USAGE of what it moved.
func (m *Mover) moveKeys(ctx context.Context, db int, keys []string) (moved int, bytes int64, err error) {
	src, dst, err := m.clients(db)
	if err != nil {
		return 0, 0, err
	}
	known := m.known(db)
	all := dedupe(keys)
	pending := all[:0]
	for _, k := range all {
		if !known.has(k) {
			pending = append(pending, k)
		}
	}
	if len(pending) == 0 {
		return 0, 0, nil
	}
	var slow []string // busy or big: one at a time under the lock
	st, mem, err := m.combined(ctx, db, pending)
	if err != nil {
		return 0, 0, err
	}
	off := pending[:0:0]
	for i, k := range pending {
		switch st[i] {
		case stMoved:
			moved++
			bytes += mem[i]
			off = append(off, k)
		case stNoKey:
			off = append(off, k)
		case stBusy, stBig:
			slow = append(slow, k)
		}
	}
	known.add(off...)
	var firstErr error
	for _, k := range slow {
		ok, b, err := m.moveLocked(ctx, src, dst, db, k)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			if !errors.Is(err, ErrKeyBusy) {
				break // the servers are in trouble; the caller retries the rest
			}
			continue
		}
		known.add(k)
		if ok {
			moved++
			bytes += b
		}
	}
	return moved, bytes, firstErr
}

// runCheck runs checkScript for key (locked with token) and returns its status and MEMORY
// USAGE.
func (m *Mover) runCheck(ctx context.Context, src *redis.Client, key, token string) (st, mem int64, err error) {
	res, err := checkScript.Run(ctx, src, []string{LocksKey, key}, token, m.cfg.Fence).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: check key %q: %w", key, runOver(err))
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("migrate: check script answered %d values for one key", len(res))
	}
	return res[0], res[1], nil
}

// Internal key names. The temp key and fence (on the target) hash to the key's slot, so they
// live where the key lives and move with nothing. Locks (on the source) are fields of
// LocksKey; lockPrefix names the movers' other locks, which they never move, and
// CopyLockPrefix a slot's copy lock (router/xdc), which they do.
const (
	lockPrefix  = "__redraft:lock"
	tmpPrefix   = "__redraft:tmp:"
	fencePrefix = "__redraft:tmp:fence:"
)

// CopyLockPrefix starts the key of a slot's copy lock (router/xdc: set while a full copy
// replaces the slot in a DC, or reads it for another DC), which every write of the slot
// checks where it runs. It moves with the slot like its data: a copy that began before a
// migration holds the slot on the target too, and writes there wait for it.
const CopyLockPrefix = lockPrefix + ":cp:"

// maxBatchKeys bounds BatchKeys: the scripts pass a batch's keys to one command (HMGET, HSET,
// MGET, DEL), and Lua unpacks at most a few thousand values.
const maxBatchKeys = 1000

func tmpKey(key string) string   { return tmpPrefix + sameSlotTag(key) + key }
func fenceKey(key string) string { return fencePrefix + sameSlotTag(key) + key }

// newToken returns a lock value unique to one attempt of one mover.
func (m *Mover) newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return m.cfg.Owner + ":" + hex.EncodeToString(b[:])
}

func dedupe(keys []string) []string {
	if len(keys) < 2 {
		return append([]string(nil), keys...)
	}
	seen := make(map[string]struct{}, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// SleepCtx waits d or until ctx is done, and then answers ctx.Err().
func SleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ms formats a duration as whole milliseconds for a command argument.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
