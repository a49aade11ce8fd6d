package xdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The shipping side of one log per group (grouplog.go): a logGroup follows one group's log in
// one database and ships it to every other DC, one logShipper per destination. Run starts one
// per group whose shipping slot (shipSlot) this node owns on the token ring, at data format 3
// only (LogDataFormat: docs/replication.md, sessions 24 to 27). A shipper
// ships nothing to a destination until it applied what the slots' outboxes held from before
// (logdrain.go), and copies the group in full to a destination the log no longer holds the
// position of (groupcopy.go). Each shipper reports its
// destination's lag and state to the status (pairStats), keeps the DC's last answer for
// DC_EACH_SAFE_QUORUM writes and flushes (awaitlog.go), and follows its position across
// failovers (logmemo.go).

// logKey names a running logGroup: the group's master and database, and the group's failover
// epoch (a failover starts the group's shipping again, on the new master).
type logKey struct {
	server
	db    int
	epoch uint64
}

// runningLog is a started logGroup: its destinations, how to stop it and when it ended.
type runningLog struct {
	g      *logGroup
	dests  []string
	cancel context.CancelFunc
	done   <-chan struct{}
}

// retiredLog is a stopped logGroup's log (its database is its key's), and when it ended.
type retiredLog struct {
	log  LogID
	done <-chan struct{}
}

// planLogs starts and stops logGroups so that exactly want run, each to dests. r.mu is held.
// It does not wait for a stopped group to end: a shipper can be in a call to another DC for
// seconds, and r.mu is what the status report takes. A stopped group's end is kept in
// r.retired; a group started again for the same log and database, on the same master or on
// a failover's new one, waits for it before it ships, so one log never has two groups
// shipping it. A stopped group's range in flight is not abandoned (logShipper.run): a new
// master's group that asked the destination its position while the old master's last range
// was still being applied there took a position the destination then left, and shipped the
// new master's writes after writes the new master lacks, uncounted (session 42).
func (r *Replicator) planLogs(ctx context.Context, want map[logKey]LogID, dests []string) {
	if r.logs == nil {
		r.logs, r.retired = map[logKey]*runningLog{}, map[logKey]retiredLog{}
	}
	for k, l := range r.retired {
		select {
		case <-l.done:
			delete(r.retired, k)
		default:
		}
	}
	for k, l := range r.logs {
		if _, ok := want[k]; !ok || !slices.Equal(l.dests, dests) {
			l.cancel()
			r.retired[k] = retiredLog{log: l.g.log, done: l.done}
			delete(r.logs, k)
		}
	}
	for k, id := range want {
		if r.logs[k] != nil {
			continue
		}
		c := r.clientLocked(k.server, k.db)
		g := newLogGroup(r, c, id, k.db, dests, r.cfg.Heartbeat)
		g.calls = ctx
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var before []<-chan struct{}
		for rk, l := range r.retired {
			if l.log == id && rk.db == k.db {
				before = append(before, l.done)
				delete(r.retired, rk) // done closes after these: the ends chain
			}
		}
		go func() {
			defer close(done)
			for _, b := range before {
				<-b // cancelled: it ends
			}
			if cctx.Err() == nil {
				g.run(cctx)
			}
		}()
		r.logs[k] = &runningLog{g: g, dests: dests, cancel: cancel, done: done}
	}
}

// logCallGrace is how long a stopped group's range in flight may still take (planLogs): long
// enough for a destination to apply a range, short enough that a failover's new group, which
// waits for it, does not wait on a destination that does not answer (a call tries each node of
// the DC for up to 30 s).
const logCallGrace = 5 * time.Second

// afterGrace returns a context that ends with base (nil: with ctx), or grace after ctx ends;
// stop releases it.
func afterGrace(ctx, base context.Context, grace time.Duration) (context.Context, func()) {
	if base == nil {
		return ctx, func() {}
	}
	c, cancel := context.WithCancel(base)
	// (A grace timer started before stop only cancels c again when it fires.)
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return c, func() {
		stopAfter()
		cancel()
	}
}

// logRead bounds the entries one range carries.
const logRead = 512

// logGroup ships one group's log in one database to the destination DCs, appends a heartbeat
// entry to it every beat (so an idle log's ranges still move every DC's position, and a
// shipper sees its destination's answers), and trims it to the lowest position every
// destination has answered (XTRIM MINID keeps the entry at that position: a shipper that
// starts again finds its destination's position in the log).
type logGroup struct {
	r     *Replicator
	c     *redis.Client // the group's master, in the log's database
	log   LogID
	db    int
	dests []string
	beat  time.Duration
	// calls bounds the ranges' calls to other DCs with the group's context (afterGrace):
	// the replicator's, so that a stopped group waits for its range in flight (planLogs).
	calls context.Context

	shippers []*logShipper // one per destination

	length atomic.Int64 // the log's length at the last beat (XLEN), for the status report

	mu    sync.Mutex
	acked map[string]string // destination DC -> its last answered position the log keeps
	// applied is each destination DC's last answered position, whether or not the log is
	// kept from it (a migrating DC's answers, too): what DC_EACH_SAFE_QUORUM writes and
	// flushes wait for (awaitLog). changed is closed and replaced when one moves.
	applied map[string]string
	changed chan struct{}
}

// newLogGroup returns the logGroup of log (its group's master c, in database db) shipping to
// dests, with a heartbeat every beat.
func newLogGroup(r *Replicator, c *redis.Client, log LogID, db int, dests []string, beat time.Duration) *logGroup {
	g := &logGroup{r: r, c: c, log: log, db: db, dests: dests, beat: beat, acked: map[string]string{},
		applied: map[string]string{}, changed: make(chan struct{})}
	for _, d := range dests {
		g.shippers = append(g.shippers, &logShipper{g: g, dest: d, stats: pairStats{started: time.Now()}})
	}
	return g
}

// run ships until ctx ends.
func (g *logGroup) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range g.shippers {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx) }()
	}
	t := time.NewTicker(g.beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
		// NOMKSTREAM past database 0: a database without a log (only a migration's fence key,
		// say) gets none; heartbeats there would make every DC apply a range per beat for
		// nothing. Database 0 gets its log from the first beat, writes or not: the other DCs'
		// tombstone collectors wait for every group log of this DC (gc.go), and a group that
		// never took a write would otherwise hold their collection forever.
		hb := EntryFields(g.r.cfg.Cluster.DC(), nil)
		args := []any{"XADD", LogKey, "NOMKSTREAM", "*"}
		if g.db == 0 {
			args = []any{"XADD", LogKey, "*"}
		}
		for _, f := range hb {
			args = append(args, f)
		}
		if err := g.c.Do(ctx, args...).Err(); err != nil && ctx.Err() == nil {
			g.r.log.Debug("group log: heartbeat", "log", g.log.String(), "err", err)
		}
		if min, ok := g.trimPoint(); ok {
			if err := g.c.Do(ctx, "XTRIM", LogKey, "MINID", min).Err(); err != nil && ctx.Err() == nil {
				g.r.log.Debug("group log: trim", "log", g.log.String(), "err", err)
			}
		}
		if n, err := g.c.XLen(ctx, LogKey).Result(); err == nil {
			g.length.Store(n)
		}
	}
}

// ack records dest's answered position.
func (g *logGroup) ack(dest, pos string) {
	g.mu.Lock()
	g.acked[dest] = pos
	g.mu.Unlock()
}

// answered records dest's answer, pos, the position through which that DC applied the log,
// and wakes the writes and flushes waiting for it.
func (g *logGroup) answered(dest, pos string) {
	g.mu.Lock()
	if g.applied[dest] != pos {
		g.applied[dest] = pos
		close(g.changed)
		g.changed = make(chan struct{})
	}
	g.mu.Unlock()
}

// through returns the DCs of dests that have not applied the log through id, and a channel
// closed when an answer changes.
func (g *logGroup) through(dests []string, id string) (missing []string, changed <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range dests {
		if p := g.applied[d]; p == "" || CompareIDs(p, id) < 0 {
			missing = append(missing, d)
		}
	}
	return missing, g.changed
}

// trimPoint is the lowest position every destination has answered, when each has one.
func (g *logGroup) trimPoint() (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	min := ""
	for _, d := range g.dests {
		p := g.acked[d]
		if p == "" {
			return "", false
		}
		if min == "" || CompareIDs(p, min) < 0 {
			min = p
		}
	}
	return min, min != ""
}

// logShipper ships a logGroup's log to one destination DC: it reads the entries after the
// destination's position (XREAD, blocking while there are none), sends them as one range
// (RPCLog) to a node of that DC and goes on from the position the DC answers, which a gap
// sends back. It starts from the position the destination answers (position). Before it
// ships from a position it has not just been answered (at its start, after a gap or a failed
// call), it checks that the log still holds every entry after it. A destination that fell
// past the log's bound (WRITE's MAXLEN), one the log was never shipped to, and one that
// applied entries a failed-over master's promoted replica never received (its position is
// missing from the new master's log; the writes lost are counted) get the group copied in
// full (copyGroup), and shipping goes on from the position the copy gives: nothing is applied
// twice, nothing after a hole is applied, and the DCs agree again.
type logShipper struct {
	g      *logGroup
	dest   string
	behind atomic.Bool
	conn   *feedConn // the log's reads (read), dialed when needed; the shipper's goroutine only

	mu      sync.Mutex
	stats   pairStats // for the status report (report)
	pending int64     // entries of the range in flight not yet answered applied
}

// memoKey names the shipper's destination position in its log (logmemo.go).
func (s *logShipper) memoKey() logMemoKey { return logMemoKey{log: s.g.log, db: s.g.db, dest: s.dest} }

// report adds the shipper's figures to p, and returns its recent entry lags.
func (s *logShipper) report(p *PairReport, now time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A log gets heartbeats once it exists (NOMKSTREAM; database 0's from the first beat), and
	// trims keep an entry in it.
	s.stats.report(p, now, s.g.r.cfg.Heartbeat, s.g.length.Load() > 0, false)
	p.Pending += s.pending
	p.Outbox += s.g.length.Load()
	return s.stats.recentLags()
}

// stall records for the report why a round applied nothing: what, and its key-value args.
func (s *logShipper) stall(what string, args ...any) {
	var b strings.Builder
	b.WriteString(what)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&b, " %v=%v", args[i], args[i+1])
	}
	s.mu.Lock()
	s.stats.stall(b.String())
	s.mu.Unlock()
}

// fail records a shipping error for the report.
func (s *logShipper) fail(err error) {
	s.mu.Lock()
	s.stats.failed(err.Error(), time.Now())
	s.mu.Unlock()
}

// shipped records the destination's answer to a range of entries: those through pos were
// applied.
func (s *logShipper) shipped(entries []Entry, pos string) {
	now := time.Now()
	n := 0
	s.mu.Lock()
	for _, e := range entries {
		if pos == "" || CompareIDs(e.ID, pos) > 0 {
			break
		}
		s.stats.applied(e.ID, len(e.Cmds) == 0, now)
		n++
	}
	s.pending = int64(len(entries) - n)
	s.stats.lastErr = ""
	s.mu.Unlock()
	s.g.r.counter(s.dest).shipped.Add(int64(n))
}

// errBehind reports that the log no longer holds every entry after the destination's position.
var errBehind = errors.New("xdc: the group's log does not hold the destination's position (trimmed past it, or lost with a failed-over master)")

func (s *logShipper) run(ctx context.Context) {
	defer func() {
		if s.conn != nil {
			s.conn.close()
		}
	}()
	g := s.g
	prev, check := "", true
	var err error
	wait := 50 * time.Millisecond
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
	// failing is the last trouble reported (a failed send, a held range), logged once at Warn
	// when it starts and at Debug while it lasts, with a line when shipping is back.
	failing := ""
	trouble := func(what string, args ...any) {
		s.stall(what, args...)
		if failing != what {
			g.r.log.Warn("group log: "+what, append([]any{"log", g.log.String(), "to", s.dest}, args...)...)
		} else {
			g.r.log.Debug("group log: "+what, append([]any{"log", g.log.String(), "to", s.dest}, args...)...)
		}
		failing = what
	}
	started, drained := false, false
	// lostBeat is a position the log lacks that the shipper ships on from all the same: a
	// heartbeat a failed-over master's replica never received (memos.loss). Reads after it
	// cannot check that it is still in the log. hasLostBeat says there is one: "" is also the
	// position of a destination that applied nothing, whose reads from the log's start are
	// checked (until session 45 they were not, and a head cut meanwhile was never shipped).
	lostBeat, hasLostBeat := "", false
	// record is the master process the last check read, until it is recorded (checked.go).
	record := ""
	for ctx.Err() == nil {
		if !started {
			if prev, err = s.position(ctx); err != nil {
				s.fail(err)
				g.r.log.Debug("group log: the destination's position", "log", g.log.String(), "to", s.dest, "err", err)
				pause()
				continue
			}
			// Not answered yet (what DC_EACH_SAFE_QUORUM writes wait for): the check below
			// may find the position one the log lacks, with writes below it unshipped.
			g.r.memos.started(s.memoKey(), prev)
			started = true
		}
		if check {
			// The master process before the check: the record written once it passes
			// (checked.go) must not name a process the check did not read.
			rid, ridErr := checkedProcess(ctx, g.c)
			lost := false // writes the destination applied that this master lacks
			err = s.contiguous(ctx, prev)
			if errors.Is(err, errBehind) {
				// prev can be stale rather than the destination behind: another node shipped
				// this log to it meanwhile (the ring's owner of the group's shipping slot moves
				// while pings fail, and two nodes ship for a while), and that node's trims
				// dropped prev. The destination's own answer decides.
				at, perr := s.position(ctx)
				if perr != nil { // unknown until it answers: nothing is copied on a guess
					if ctx.Err() != nil {
						return
					}
					s.fail(perr)
					trouble("cannot ask the destination its position", "err", perr)
					pause()
					continue
				}
				if at != "" && at != prev && s.contiguous(ctx, at) == nil {
					g.r.log.Info("group log: the destination stands elsewhere than this shipper knew; shipping from there",
						"log", g.log.String(), "to", s.dest, "was", prev, "position", at)
					prev, err = at, nil
					g.answered(s.dest, prev)
					g.r.memos.started(s.memoKey(), prev)
				}
			}
			if errors.Is(err, errBehind) {
				loss, lerr := g.r.memos.loss(ctx, g.c, s.memoKey(), prev)
				lost = lerr == nil && (loss.unshipped != "" || loss.count)
				switch {
				case lerr != nil:
					err = lerr
				case loss.unshipped != "":
					g.r.log.Error("group log: the failed-over master's log holds a write at or below the destination's position that was never shipped; the group is copied there in full",
						"log", g.log.String(), "to", s.dest, "position", prev, "write", loss.unshipped)
				case loss.known && loss.lost == 0:
					g.r.log.Info("group log: the destination's position is a heartbeat the failed-over master's replica lacked; shipping on",
						"log", g.log.String(), "to", s.dest, "position", prev)
					err, lostBeat, hasLostBeat = nil, prev, true
				case loss.count:
					g.r.counter(s.dest).lost.Add(int64(loss.lost))
					g.r.log.Error("group log: the destination applied writes that the failed-over master lost with it; the group is copied there in full",
						"log", g.log.String(), "to", s.dest, "position", prev, "lost", loss.lost)
				}
			}
			if errors.Is(err, errBehind) {
				// The group is copied to the destination in full, which then stands at the
				// log's entry read before the copy (groupcopy.go); the next round checks it.
				s.behind.Store(true)
				s.fail(err)
				g.r.log.Warn("group log: the destination is behind the log; copying the group in full", "log", g.log.String(), "to", s.dest, "position", prev)
				at, cerr := s.copyGroup(ctx, lost)
				if cerr != nil {
					if ctx.Err() != nil {
						return
					}
					s.fail(cerr)
					trouble("cannot copy the group in full", "err", cerr)
					pause()
					continue
				}
				prev, drained = at, true
				g.answered(s.dest, at)
				g.r.memos.started(s.memoKey(), at)
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.fail(err)
				g.r.log.Warn("group log: cannot ship", "log", g.log.String(), "to", s.dest, "position", prev, "err", err)
				pause()
				continue
			}
			s.behind.Store(false)
			if prev != "" {
				g.answered(s.dest, prev)
			}
			check, record = ridErr != nil, rid // without the process read, check again next round
		}
		if record != "" {
			// Written before each range until it is: a full copy from the destination waits
			// for it, shipping does not (a master refusing writes must still be trimmed).
			if err := g.c.Set(ctx, checkedKey(s.dest), record, 0).Err(); err != nil {
				g.r.log.Debug("group log: record the check of the destination's position", "log", g.log.String(), "to", s.dest, "err", err)
			} else {
				record = ""
			}
		}
		if !drained {
			if err = s.outboxesDrained(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				trouble("waiting for the outboxes", "err", err)
				pause()
				continue
			}
			drained = true
		}
		entries, err := s.read(ctx, prev, !hasLostBeat || prev != lostBeat)
		if errors.Is(err, errBehind) {
			check = true // as after a failed call: the destination's answer decides
			continue
		}
		if err != nil || len(entries) == 0 {
			if err != nil && ctx.Err() == nil {
				g.r.log.Debug("group log: read", "log", g.log.String(), "err", err)
				s.stall("cannot read the log", "err", err)
				check = true // the master may have restarted: check it, and record it checked
				pause()
			}
			continue
		}
		entries = capRange(entries) // the rest is read again after the destination's answer
		req := LogRequest{Log: g.log, DB: g.db, Prev: prev, Last: entries[len(entries)-1].ID}
		req.Entries = make([]LogEntry, len(entries))
		for i, e := range entries {
			req.Entries[i] = LogEntry{Slot: EntrySlot(e), WireEntry: WireEntry{ID: e.ID, TS: e.TS, Cmds: e.Cmds}}
		}
		g.r.markLogHot(g.db, req.Entries)
		var res LogResponse
		s.mu.Lock()
		s.pending = int64(len(entries))
		s.mu.Unlock()
		calls, stop := afterGrace(ctx, g.calls, logCallGrace)
		err = g.r.callDC(calls, g.r.cfg.Cluster.State(), s.dest, "", RPCLog, EncodeLog(req), &res)
		stop()
		if err != nil {
			if ctx.Err() == nil {
				s.fail(err)
				trouble("send failed", "err", err)
				check = true
				pause()
			}
			continue
		}
		if res.Held == "" || res.Position != prev {
			// Back off only while a range is held where it stood: a migration here holds
			// every log toward this DC, and a retry every 50 ms from each of them (a log per
			// group and database) starved the nodes.
			wait = 50 * time.Millisecond
		}
		switch {
		case res.Gap:
			g.r.log.Warn("group log: the destination lost entries it had applied; sending them again",
				"log", g.log.String(), "to", s.dest, "from", res.Position)
			check = true
		case strings.HasPrefix(res.Held, "HOLD "): // a handoff: the source group's log is shipping
			if failing != "handoff" {
				g.r.log.Info("group log: waiting at a handoff", "log", g.log.String(), "to", s.dest, "why", res.Held)
			}
			failing = "handoff"
			s.stall("waiting at a handoff", "why", res.Held)
			pause()
		case res.Held != "":
			trouble("range held", "why", res.Held, "at", res.Position)
			pause()
		case failing != "":
			g.r.log.Info("group log: shipping again", "log", g.log.String(), "to", s.dest, "after", failing)
			failing = ""
		}
		g.r.memos.answered(s.memoKey(), prev, entries, res.Position)
		prev = res.Position
		s.shipped(entries, prev)
		if prev != "" {
			g.answered(s.dest, prev) // after a gap, lower: the DC lost what it had applied
		}
		if prev != "" && !res.Migrating {
			// While the destination migrates slots, the log is kept from the position it
			// answered before: copying a slot's positions to its new group can make the DC
			// answer a gap below what it answered meanwhile (migration.go, Moved).
			g.ack(s.dest, prev)
		}
	}
}

// position asks the destination where it stands in the log: a range of nothing, from the log's
// first entry through it, changes nothing and is answered with the DC's position (or a gap
// below it, with the position too). An empty log is shipped from its start.
func (s *logShipper) position(ctx context.Context) (string, error) {
	g := s.g
	first, err := g.c.XRangeN(ctx, LogKey, "-", "+", 1).Result()
	if err != nil || len(first) == 0 {
		return "", err
	}
	var res LogResponse
	req := LogRequest{Log: g.log, DB: g.db, Prev: first[0].ID, Last: first[0].ID}
	if err := g.r.callDC(ctx, g.r.cfg.Cluster.State(), s.dest, "", RPCLog, req, &res); err != nil {
		return "", err
	}
	return res.Position, nil
}

// read returns the log's entries after pos ("" for its start), at most logRead, waiting up to
// a beat for some. It reads on a connection of its own without go-redis (feedConn: the
// change feed's reader; through go-redis the reads were a fifth of the shipping node's CPU at
// 2,000 writes/s). With kept, it fails with errBehind when pos is no longer in the log after
// the read: the log was cut past it (WRITE's MAXLEN while the destination was slow or held
// the ranges, or another node's trim), and the read may have skipped entries cut after pos.
// Without kept (pos is a heartbeat the log lost with a failover, accepted), it does not check.
func (s *logShipper) read(ctx context.Context, pos string, kept bool) ([]Entry, error) {
	if pos == "" {
		pos = "0-0"
	}
	if s.conn == nil {
		c, err := dialFeed(ctx, s.g.c)
		if err != nil {
			return nil, err
		}
		s.conn = c
	}
	// From the log's start ("0-0") there is no position to check: contiguous checks, after
	// the read, that the log was never cut (a cut between the start's check and the read
	// would make the read begin after it, and the destination would stand past the hole).
	check := kept
	msgs, kept, err := s.conn.xreadKept(ctx, LogKey, logRead, int(s.g.beat.Milliseconds()), pos, check && pos != "0-0")
	if err != nil {
		s.conn.close()
		s.conn = nil
		return nil, err
	}
	if !kept {
		return nil, errBehind
	}
	if check && pos == "0-0" && len(msgs) > 0 {
		if err := s.contiguous(ctx, pos); err != nil {
			return nil, err
		}
	}
	out := make([]Entry, len(msgs))
	for i, m := range msgs {
		if out[i], err = ParseEntry(m.id, m.fields); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// contiguous checks that the log holds every entry after pos: pos itself (trims keep every
// destination's position), or, for "", every entry it was ever given. When this process saw
// the destination apply pos, the entry there must be the one it applied (logMemos.differs: a
// promoted replica can hold another with that id).
func (s *logShipper) contiguous(ctx context.Context, pos string) error {
	if pos == "" || pos == "0-0" { // "0-0": a slot whose group had applied nothing (Moved)
		info, err := s.g.c.XInfoStream(ctx, LogKey).Result()
		if err != nil && strings.Contains(err.Error(), "no such key") {
			return nil
		}
		if err != nil {
			return err
		}
		if info.EntriesAdded != info.Length {
			return errBehind
		}
		return nil
	}
	raw, err := s.g.c.Do(ctx, "XRANGE", LogKey, pos, pos, "COUNT", 1).Slice()
	if err != nil {
		return err
	}
	at, err := parseRange(raw)
	if err != nil {
		return err
	}
	if len(at) == 0 || s.g.r.memos.differs(s.memoKey(), pos, at[0]) {
		return errBehind // cut, or another entry than the one the destination applied there
	}
	return nil
}

// rangeBytes bounds the effect bytes of one range a logShipper sends (at least one entry goes,
// whatever its size): a range of BatchSize entries of large values made one body of hundreds
// of MB, held in memory on both sides and sent again whole after any failure.
const rangeBytes = 4 << 20

// capRange returns the longest prefix of entries whose effects hold at most rangeBytes bytes,
// one entry at least.
func capRange(entries []Entry) []Entry {
	n := 0
	for i, e := range entries {
		for _, c := range e.Cmds {
			for _, a := range c {
				n += len(a)
			}
		}
		if n > rangeBytes && i > 0 {
			return entries[:i]
		}
	}
	return entries
}
