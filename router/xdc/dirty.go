package xdc

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/migrate"
)

// DirtyKey is the change feed of a master's database: a stream with one entry per outbox
// append, naming the outbox ("o" <outbox key>), written in the same script or MULTI as the
// entry itself. A shipping loop follows it with one blocking XREAD instead of looking at every
// outbox it ships, so what a loop does per round grows with the writes, not with the slots,
// and an idle master is asked one blocked read every few seconds per loop. WRITE's feed
// entries also carry the outbox entry itself (FeedEntry), so that a loop ships what it reads
// from the feed without reading the outbox again.
const DirtyKey = migrate.DirtyKey

// DirtyMaxLen bounds the feed (XADD's MAXLEN ~ argument). A loop that falls this far behind
// it (or that starts) looks at every outbox it ships once. With entries of up to feedDataMax
// bytes, the feed holds at most about 25 MB.
const DirtyMaxLen = "20000"

// feedDataMax bounds the bytes of effect arguments a feed entry carries along with the outbox's
// name: a larger entry is read from its outbox.
const feedDataMax = "1024"

// feedEvery is the least time between the starts of two reads of the feed while they come
// back with fewer than feedFew entries (follow).
const (
	feedEvery = time.Millisecond
	feedFew   = 16
)

// dirtyCount is how many feed entries one read takes.
const dirtyCount = 4096

// maxFed bounds the feed-carried entries a loop holds (loop.fed): past it, follow only hints
// their slots, whose outboxes the loop then reads.
const maxFed = 8192

// DirtyFields are the fields of a change feed entry for slot's outbox.
func DirtyFields(slot int) []string { return []string{"o", OutboxKey(slot)} }

// FeedEntry is what a change feed entry says: the outbox it names and, when it carries one,
// the outbox entry (Carried) and the id of the outbox entry before it (Prev, "" for none).
type FeedEntry struct {
	Outbox  string
	Carried bool
	Prev    string
	Entry   Entry
}

// ParseFeedEntry decodes a change feed entry's fields: "o" <outbox>, then optionally "p"
// <prev> "i" <id> and the outbox entry's fields (ParseEntry).
func ParseFeedEntry(fields []string) (FeedEntry, error) {
	if len(fields) < 2 || fields[0] != "o" {
		return FeedEntry{}, fmt.Errorf("xdc: feed entry without an outbox")
	}
	f := FeedEntry{Outbox: fields[1]}
	if len(fields) < 6 || fields[2] != "p" || fields[4] != "i" {
		return f, nil
	}
	e, err := ParseEntry(fields[5], fields[6:])
	if err != nil {
		return f, err
	}
	f.Carried, f.Prev, f.Entry = true, fields[3], e
	return f, nil
}

// fedEntry is an outbox entry the change feed carried, with the id of the entry before it.
type fedEntry struct {
	prev string
	e    Entry
}

// feed keeps a carried entry for the slot at position p (l.mu held), unless the loop holds
// maxFed already; it reports whether it kept it.
func (l *loop) feed(p int, f FeedEntry) bool {
	if l.fedN >= maxFed {
		return false
	}
	if l.fed == nil {
		l.fed = map[int][]fedEntry{}
	}
	l.fed[p] = append(l.fed[p], fedEntry{f.Prev, f.Entry})
	l.fedN++
	return true
}

// dropFed forgets the carried entries of position p up to id, the destination's last applied
// (l.mu held).
func (l *loop) dropFed(p int, id string) {
	q := l.fed[p]
	if len(q) == 0 || !isEntryID(id) {
		return
	}
	n := 0
	for n < len(q) && CompareIDs(q[n].e.ID, id) <= 0 {
		n++
	}
	if n == 0 {
		return
	}
	l.fedN -= n
	if n == len(q) {
		delete(l.fed, p)
		return
	}
	l.fed[p] = q[n:]
}

// forgetFed forgets the carried entries of slot: its outbox was trimmed past them.
func (l *loop) forgetFed(slot int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := indexOf(l.slots, slot); p >= 0 {
		l.dropAllFed(p)
	}
}

// dropAllFed forgets every carried entry of position p (l.mu held).
func (l *loop) dropAllFed(p int) {
	l.fedN -= len(l.fed[p])
	delete(l.fed, p)
}

// fedAfter returns up to count carried entries of position p that follow after in its outbox
// with nothing between them, and whether there were any (l.mu held). None means the outbox
// must be read: the entry after after came before the loop followed the feed, or it was not
// kept. The caller has checked l.unfed: the entries it returns are then all the outbox holds
// after after, as far as the feed has told.
func (l *loop) fedAfter(p int, after string, count int64) ([]Entry, bool) {
	l.dropFed(p, after)
	q := l.fed[p]
	prev := after
	if !isEntryID(prev) {
		prev = ""
	}
	var out []Entry
	for _, f := range q {
		if f.prev != prev || int64(len(out)) == count {
			break
		}
		out = append(out, f.e)
		prev = f.e.ID
	}
	return out, len(out) > 0
}

// feedPos returns the id of the last entry of src's change feed ("0-0" when it has none), the
// position from which a loop that has just looked at every outbox follows it.
func feedPos(ctx context.Context, src *redis.Client) (string, error) {
	res, err := src.XRevRangeN(ctx, DirtyKey, "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(res) == 0 {
		return "0-0", nil
	}
	return res[0].ID, nil
}

// follow reads the change feed of the loop's master from pos on and hints the slots the loop
// ships. When the feed was trimmed past what it had read (entries it never saw), or a read
// fails for long, it asks the loop to look at every outbox (full).
func (l *loop) follow(ctx context.Context, src *redis.Client, pos string) {
	backoff := 50 * time.Millisecond
	var fc *feedConn
	defer func() {
		if fc != nil {
			fc.close()
		}
	}()
	for ctx.Err() == nil {
		var msgs []feedMessage
		var err error
		if fc == nil {
			fc, err = dialFeed(ctx, src)
		}
		readAt := time.Now()
		if err == nil {
			msgs, err = fc.xread(ctx, pos)
			if err != nil {
				fc.close()
				fc = nil
			}
		}
		if err == nil && len(msgs) == 0 {
			l.following.Store(true)
			continue // nothing written for the block's time
		}
		if err != nil {
			l.following.Store(false) // the node's own writes hint the loop meanwhile
			if ctx.Err() != nil {
				return
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.following.Store(true)
		from := pos
		l.mu.Lock()
		for _, m := range msgs {
			pos = m.id
			f, err := ParseFeedEntry(m.fields) // on an error, f names the outbox alone
			if p, ok := l.position(f.Outbox); ok {
				// Entries are kept while the destination takes them: the outbox keeps what
				// waits for a DC that is down, and may be trimmed past it (trimToLive).
				s := l.slots[p]
				if err != nil || !f.Carried || l.lastErr != "" || l.copying[s] || !l.feed(p, f) {
					l.unfed[p]++
				}
				l.mark(s)
			}
		}
		l.mu.Unlock()
		n := len(msgs)
		// Only a full read can have been preceded by trimmed entries: the feed holds
		// DirtyMaxLen entries after any it dropped.
		if n == dirtyCount && l.feedTrimmedAfter(ctx, src, from) {
			l.mu.Lock()
			l.fed, l.fedN = nil, 0 // entries after these may be unread: read the outboxes
			l.mu.Unlock()
			l.full.Store(true)
		}
		if l.ph.enabled() {
			now := time.Now()
			l.woke.CompareAndSwap(0, now.UnixNano())
			l.ph.add("feed", LagOf(pos, now)) // the newest entry: master's clock to here
		}
		l.signal()
		// At most one read per feedEvery while reads come back with a few entries: a write
		// rate that answers every read with an entry or two would otherwise cost a read, a
		// round, a peer call and an APPLY per write (wake-ups on four processes each),
		// several times a write's own CPU. A read that waited on the master that long is
		// not held, nor one that brought feedFew entries or more (the rounds are large
		// already).
		if n < feedFew {
			if d := feedEvery - time.Since(readAt); d > 0 && !sleep(ctx, d) {
				return
			}
		}
	}
}

// feedTrimmedAfter reports whether entries of the feed after id may have been trimmed before
// they were read: trimming is from the front, so that is when the feed's first entry is after
// id. (The feed is trimmed only past DirtyMaxLen entries, so this is also true, needlessly,
// of a reader about that far behind: it then looks at every outbox once, which it would soon
// have to anyway.)
func (l *loop) feedTrimmedAfter(ctx context.Context, src *redis.Client, id string) bool {
	info, err := src.Do(ctx, "XINFO", "STREAM", DirtyKey).Result()
	if err != nil {
		return true
	}
	added, _ := streamInfoField(info, "entries-added").(int64)
	length, _ := streamInfoField(info, "length").(int64)
	if added <= length {
		return false // nothing was ever trimmed
	}
	first, _ := streamInfoField(info, "recorded-first-entry-id").(string)
	return first == "" || CompareIDs(first, orZero(id)) > 0
}

// dirtyArgs is the XADD of a change feed entry for slot, for a MULTI or a pipeline.
func dirtyArgs(slot int) []any {
	return []any{"XADD", DirtyKey, "MAXLEN", "~", DirtyMaxLen, "*", "o", OutboxKey(slot)}
}

// feedMessage is one entry of an XREAD of the change feed.
type feedMessage struct {
	id     string
	fields []string
}
