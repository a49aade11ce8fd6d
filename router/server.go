// Package router is redraft's data plane: it serves RESP to clients and routes each command
// to the group owning its keys' slot in the node's datacenter.
package router

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/router/backend"
	"github.com/redraft/redraft/router/resp"
)

// Config configures a Server. The zero value of every field but DC is usable.
type Config struct {
	// NodeID and DC are this node's id and datacenter; the node routes within DC.
	NodeID, DC string
	// Rack is this node's rack: replicas on a host of a node of the same rack are read first.
	Rack string
	// Password is the default user's AUTH password ("" = none).
	Password string
	// Users are the client users besides the default one (users.go); a user named "default"
	// replaces the default user that Password describes.
	Users []User
	// MaxBulkBytes is the largest request argument (default 512 MiB, proto-max-bulk-len).
	MaxBulkBytes int64
	// MaxMultibulk is the most arguments a request may have (default 1024*1024).
	MaxMultibulk int
	// MaxTxBytes bounds what one session's MULTI block may queue, in request bytes (default
	// 1 GiB, Redis's client-query-buffer-limit): past it the block is dropped and EXEC answers
	// EXECABORT. EXEC holds the block three or four times over while it runs.
	MaxTxBytes int
	// BackendTimeout bounds dials and replies from Redis backends (default 3s).
	BackendTimeout time.Duration
	// FlushEnabled, when set, must also return true for FLUSHDB and FLUSHALL to be served; the
	// cluster setting flush_enabled applies in any case.
	FlushEnabled func() bool
	// WriteConsistency, when set (fsm.DCOne, fsm.DCQuorum or fsm.DCEachSafeQuorum), is this
	// node's default write level in place of the cluster's write_consistency setting.
	WriteConsistency string
	// Flush, when set, runs FLUSHDB (db) or FLUSHALL (fsm.FlushAllDBs) as a cluster operation
	// and returns once it is done in every DC (flush.go); nil: a flush clears this DC's groups.
	Flush func(ctx context.Context, db int, async bool) error
	// BackendConns is the number of shared connections per group and database (default 1).
	BackendConns int
	// Databases is how many databases SELECT accepts (default 16, as redis-server).
	Databases int
	// Version is reported by INFO and HELLO (default "dev").
	Version string
	// FreezeWait is how long a request for a frozen slot (a migration's barrier) is held
	// before it answers -TRYAGAIN (default 2s).
	FreezeWait time.Duration
	// Mover is the template of the movers the node builds for migrating slots (thresholds,
	// timeouts); Source, Target and Owner are filled in per migration (Owner from NodeID).
	Mover migrate.Config
	// MovedKeysCache bounds how many keys per migration the node remembers as already moved
	// off the source, to skip MoveKeys' round trip (default 1<<20; negative: no cache).
	MovedKeysCache int
	// AwaitDCs waits until every other DC applied entry id of the outbox of (db, slot), or,
	// when group is set (data format 3), of that group's log, for DC_EACH_SAFE_QUORUM writes;
	// the node provides it (nil: the level counts as reached).
	AwaitDCs func(ctx context.Context, db, slot int, group, id string) error
	// Wrote, when set, is told after each write through WRITE has been answered (the slot's
	// outbox may have a new entry): the replicator ships it without polling for it. It must
	// not block.
	Wrote func(db, slot int)
	// QuorumTimeout is WAIT's timeout for DC_QUORUM writes (default 1s).
	QuorumTimeout time.Duration
	// EachDCTimeout bounds AwaitDCs for DC_EACH_SAFE_QUORUM writes (default 5s).
	EachDCTimeout time.Duration
	// Logger receives what the data plane logs: panics while serving a client (default
	// slog.Default()).
	Logger *slog.Logger
}

// Stats are the server's counters, for /metrics.
type Stats struct {
	// Requests counts commands received; Errors counts error replies sent.
	Requests, Errors uint64
	// ClientConns is the number of open client connections; ClientConnsTotal counts accepted ones.
	ClientConns      int64
	ClientConnsTotal uint64
	// BackendConns is the number of shared backend connections up; DedicatedConns the number of
	// per-session ones (blocking, WATCH, pub/sub).
	BackendConns, DedicatedConns int64
	// BackendDialErrors counts failed backend dials.
	BackendDialErrors uint64
	// BackendWrites counts writes on shared backend connections (Requests/BackendWrites is
	// the pipelining factor).
	BackendWrites uint64
	// MigrationHeld counts requests held because their slot was frozen; MigrationTryAgain
	// the -TRYAGAIN replies given (freeze wait over, key busy, blocked client released).
	MigrationHeld, MigrationTryAgain uint64
	// KeysMovedOnAccess counts keys this node moved from a source to a target on access.
	KeysMovedOnAccess uint64
	// MigrationSourceReads counts reads of migrating slots answered by the migration's source
	// (the keys were still there: sourceread.go).
	MigrationSourceReads uint64
	// ClientPanics counts panics in a client's handling; each closed that client's
	// connection and nothing else.
	ClientPanics uint64
	// ReplicaReads counts reads served by a replica (read_from, READONLY).
	ReplicaReads uint64
	// Latency counts the commands answered per latency bucket (LatencyBounds, then +Inf; not
	// cumulative), over every command: two readings give the percentiles between them.
	Latency []uint64
}

// Server is a node's RESP front end.
type Server struct {
	cfg   Config
	users *userTable
	snap  atomic.Pointer[snapshot]
	start time.Time

	stateMu sync.Mutex // serialises SetState
	pools   map[poolKey]*backend.Pool
	movers  map[moverKey]*moverRef
	bstats  backend.Stats
	gstats  groupStats    // backend counters per group (metrics.go)
	cmds    *cmdStats     // per-command calls and latencies (cmdstats.go)
	ready   chan struct{} // closed by the first SetState

	// inflight counts, per slot, requests admitted on that slot whose reply has not been
	// received yet (migration.go explains the barrier).
	inflight [fsm.NumSlots]atomic.Int32
	// ctx ends when the server closes; movers run under it.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	lns     map[net.Listener]struct{}
	clients map[*client]struct{}
	closed  bool
	wg      sync.WaitGroup

	nextID     atomic.Uint64
	requests   atomic.Uint64
	errs       atomic.Uint64
	conns      atomic.Int64
	connsTotal atomic.Uint64
	held       atomic.Uint64
	tryAgain   atomic.Uint64
	// handedOver counts writes answered with their reply although their consistency level
	// was not reached: pops and the like, whose reply is the only copy of what they removed
	// (handsOver).
	handedOver atomic.Uint64
	// fresh is, per replica, when it last had every acknowledged write (SetReplicaFresh);
	// replicaReads counts reads replicas served.
	fresh        atomic.Pointer[map[string]time.Time]
	replicaReads atomic.Uint64
	movedKeys    atomic.Uint64
	sourceReads  atomic.Uint64
	panics       atomic.Uint64

	// reloading holds the pools whose WRITE and APPLY scripts are being reloaded.
	reloadMu  sync.Mutex
	reloading map[*backend.Pool]bool
	// internal holds the sessions Internal reuses.
	internal sync.Pool
	// turns orders blocking commands per slot as they arrived (blockorder.go); pollers counts
	// sessions polling a blocking write with several DCs (INFO blocked_clients).
	turns   blockTurns
	pollers atomic.Int64
}

// New returns a Server; it routes nothing until SetState is called.
func New(cfg Config) *Server {
	if cfg.MaxBulkBytes <= 0 {
		cfg.MaxBulkBytes = resp.DefaultMaxBulk
	}
	if cfg.MaxMultibulk <= 0 {
		cfg.MaxMultibulk = resp.DefaultMaxArgs
	}
	if cfg.MaxTxBytes <= 0 {
		cfg.MaxTxBytes = resp.MaxRequest
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = 3 * time.Second
	}
	if cfg.BackendConns <= 0 {
		cfg.BackendConns = 1
	}
	if cfg.Databases <= 0 {
		cfg.Databases = 16
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.FreezeWait <= 0 {
		cfg.FreezeWait = 2 * time.Second
	}
	if cfg.MovedKeysCache == 0 {
		cfg.MovedKeysCache = 1 << 20
	}
	if cfg.QuorumTimeout <= 0 {
		cfg.QuorumTimeout = time.Second
	}
	if cfg.EachDCTimeout <= 0 {
		cfg.EachDCTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, users: newUserTable(cfg), start: time.Now(), pools: map[poolKey]*backend.Pool{},
		movers: map[moverKey]*moverRef{}, cmds: newCmdStats(), ready: make(chan struct{}), ctx: ctx, cancel: cancel,
		lns: map[net.Listener]struct{}{}, clients: map[*client]struct{}{}}
}

// Serve accepts client connections on ln until Close is called or ln fails; it returns nil
// after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff) // accept failures (EMFILE): back off, as net/http does
				continue
			}
			return err
		}
		backoff = 0
		c := newClient(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return nil
		}
		s.clients[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.conns.Add(1)
		s.connsTotal.Add(1)
		go c.serve()
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func (s *Server) removeClient(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
	s.conns.Add(-1)
	s.wg.Done()
}

// Close stops serving: it closes the listeners, client connections and backend pools, and
// waits for client goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.lns {
		_ = ln.Close()
	}
	for c := range s.clients {
		c.closeConn()
	}
	s.mu.Unlock()
	s.cancel()
	s.stateMu.Lock()
	for _, p := range s.pools {
		p.Close()
	}
	s.pools = map[poolKey]*backend.Pool{}
	for k, r := range s.movers {
		r.retire()
		delete(s.movers, k)
	}
	s.stateMu.Unlock()
	s.wg.Wait()
	return nil
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:             s.requests.Load(),
		Errors:               s.errs.Load(),
		ClientConns:          s.conns.Load(),
		ClientConnsTotal:     s.connsTotal.Load(),
		BackendConns:         s.bstats.BackendConns.Load(),
		DedicatedConns:       s.bstats.Dedicated.Load(),
		BackendDialErrors:    uint64(s.bstats.DialErrors.Load()),
		BackendWrites:        uint64(s.bstats.Writes.Load()),
		MigrationHeld:        s.held.Load(),
		MigrationTryAgain:    s.tryAgain.Load(),
		ReplicaReads:         s.replicaReads.Load(),
		KeysMovedOnAccess:    s.movedKeys.Load(),
		MigrationSourceReads: s.sourceReads.Load(),
		ClientPanics:         s.panics.Load(),
		Latency:              s.cmds.total(),
	}
}

// flushAllowed reports whether FLUSHDB and FLUSHALL are served.
func (s *Server) flushAllowed(snap *snapshot) bool {
	return snap.flush && (s.cfg.FlushEnabled == nil || s.cfg.FlushEnabled())
}
