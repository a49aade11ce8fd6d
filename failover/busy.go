package failover

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
)

// A server running a long script (a client's EVAL or FCALL) answers nothing until Redis's
// busy-reply-threshold has passed (5 s by default), then -BUSY to every other command until
// the script ends. With master_down_after shorter than that (3 s by default), a client's
// script of a few seconds had the nodes vote its master down and fail it over, and the
// script's acknowledged writes, not yet on the replica, were lost with the fenced master. So
// the watcher keeps every server's busy-reply-threshold below master_down_after (busyReplyFor),
// and a -BUSY answer counts as the server answering (serverState.lastSeen): a busy master is
// alive, as for Redis Sentinel, which does not fail over a master that answers -BUSY before it
// tried SCRIPT KILL. redraft does not kill scripts: a script that never ends keeps its group
// busy, as it would a plain Redis.

// isBusy reports whether err is a server's -BUSY answer (a script or function running).
func isBusy(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), "BUSY")
}

// busyReplyFor is the busy-reply-threshold a server should have at most for master_down_after
// mda: a third of it, so a busy server answers -BUSY well before the nodes vote it down;
// between 100 ms and Redis's default, 5 s.
func busyReplyFor(mda time.Duration) time.Duration {
	return min(max(mda/3, 100*time.Millisecond), 5*time.Second)
}

// busyRecheck is how often keepBusyReply reads a server's threshold again (CONFIG SET through
// the routers, or on the server itself, may have raised it).
const busyRecheck = 30 * time.Second

// busyCheck is what keepBusyReply last checked on a server: its process and the limit (mark),
// and when.
type busyCheck struct {
	mark string
	at   time.Time
}

// keepBusyReply lowers busy-reply-threshold to busyReplyFor(master_down_after) on every server
// of dc that answers, when its process (run id) or the setting changed and every busyRecheck,
// each in the background; a lower threshold is kept.
func (w *Watcher) keepBusyReply(ctx context.Context, st *fsm.State, dc *fsm.DC) {
	limit := busyReplyFor(st.SettingDuration("master_down_after"))
	type todo struct {
		g          *fsm.Group
		addr, mark string
	}
	var list []todo
	w.mu.Lock()
	for _, id := range dc.GroupIDs() {
		g := dc.Groups[id]
		for _, a := range g.Servers() {
			s := w.servers[a]
			if s == nil || s.err != nil || s.runID == "" {
				continue
			}
			mark := s.runID + "/" + limit.String()
			if b := w.busyReply[a]; b.mark != mark || time.Since(b.at) >= busyRecheck {
				list = append(list, todo{g, a, mark})
			}
		}
	}
	w.mu.Unlock()
	for _, t := range list {
		gc := *t.g
		w.async(ctx, "busyreply/"+t.addr, func(ctx context.Context) {
			c := w.adm.admin(&gc, t.addr)
			// Checked (or failed) now: the next try comes after busyRecheck, so a server that
			// refuses CONFIG (renamed, no permission) is not asked, nor logged, every probe.
			w.mu.Lock()
			w.busyReply[t.addr] = busyCheck{t.mark, time.Now()}
			w.mu.Unlock()
			cur, err := c.ConfigGet(ctx, "busy-reply-threshold").Result()
			if err != nil {
				w.log.Warn("busy-reply-threshold not read (retried later)", "group", gc.ID, "server", t.addr, "err", err)
				return
			}
			ms, err := strconv.ParseInt(cur["busy-reply-threshold"], 10, 64)
			if err == nil && ms > limit.Milliseconds() {
				if err := c.ConfigSet(ctx, "busy-reply-threshold", strconv.FormatInt(limit.Milliseconds(), 10)).Err(); err != nil {
					w.log.Warn("busy-reply-threshold not lowered (retried later)", "group", gc.ID, "server", t.addr, "err", err)
					return
				}
				w.log.Info("busy-reply-threshold lowered below master_down_after: a server running a long script answers -BUSY before the nodes vote it down",
					"group", gc.ID, "server", t.addr, "was_ms", ms, "now_ms", limit.Milliseconds())
			}
		})
	}
}
