package xdc

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/migrate"
)

// DirtyKey is the change feed of a master's database: a stream with one entry per outbox
// append, naming the outbox ("o" <outbox key>), written in the same script or MULTI as the
// entry itself. A shipping loop follows it with one blocking XREAD instead of looking at every
// outbox it ships, so what a loop does per round grows with the writes, not with the slots,
// and an idle master is asked one blocked read every few seconds per loop.
const DirtyKey = migrate.DirtyKey

// DirtyMaxLen bounds the feed (XADD's MAXLEN ~ argument). A loop that falls this far behind
// it (or that starts) looks at every outbox it ships once.
const DirtyMaxLen = "100000"

// dirtyCount is how many feed entries one read takes.
const dirtyCount = 4096

// DirtyFields are the fields of a change feed entry for slot's outbox.
func DirtyFields(slot int) []string { return []string{"o", OutboxKey(slot)} }

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
	for ctx.Err() == nil {
		res, err := src.XRead(ctx, &redis.XReadArgs{Streams: []string{DirtyKey, pos}, Count: dirtyCount, Block: 2 * time.Second}).Result()
		if errors.Is(err, redis.Nil) {
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
		from, n := pos, 0
		for _, st := range res {
			for _, m := range st.Messages {
				pos, n = m.ID, n+1
				if ob, ok := m.Values["o"].(string); ok {
					if p, ok := l.index[ob]; ok {
						l.mark(l.slots[p])
					}
				}
			}
		}
		// Only a full read can have been preceded by trimmed entries: the feed holds
		// DirtyMaxLen entries after any it dropped.
		if n == dirtyCount && l.feedTrimmedAfter(ctx, src, from) {
			l.full.Store(true)
		}
		if l.ph.enabled() {
			now := time.Now()
			l.woke.CompareAndSwap(0, now.UnixNano())
			l.ph.add("feed", LagOf(pos, now)) // the newest entry: master's clock to here
		}
		l.signal()
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
