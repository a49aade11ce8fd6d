package failover

import (
	"context"

	"github.com/redraft/redraft/fsm"
)

// NoEviction is the only maxmemory-policy a server of a cluster with several DCs may have.
// Redis evicts a key without redraft's WRITE, so an evicted key would be gone in this DC only,
// for good (no entry tells the other DCs, and no later write brings it back unless it names
// the key), and eviction may take replication's own keys too: the group's log, the inboxes,
// the convergence metadata. With noeviction a full server refuses writes with -OOM and
// nothing diverges. The routers refuse CONFIG SET of another policy (router/config_cmd.go);
// the watcher covers what they cannot see: a server started with another policy, a DC added
// to a cluster whose servers evict, a policy set on the server directly.
const NoEviction = "noeviction"

// keepNoEviction sets maxmemory-policy noeviction on every server of dc whose last INFO
// named another policy (masters, replicas and fenced servers alike: a replica evicts once
// promoted), each in the background, once at a time per server. Called by tick when the
// cluster has several DCs.
func (w *Watcher) keepNoEviction(ctx context.Context, dc *fsm.DC) {
	type evicting struct {
		g            *fsm.Group
		addr, policy string
	}
	var todo []evicting
	w.mu.Lock()
	for _, id := range dc.GroupIDs() {
		g := dc.Groups[id]
		for _, a := range g.Servers() {
			if s := w.servers[a]; s != nil && s.err == nil && s.info.Policy != "" && s.info.Policy != NoEviction {
				todo = append(todo, evicting{g, a, s.info.Policy})
			}
		}
	}
	w.mu.Unlock()
	for _, e := range todo {
		gc := *e.g
		w.async(ctx, "noeviction/"+e.addr, func(ctx context.Context) {
			c := w.adm.admin(&gc, e.addr)
			// The INFO may predate a CONFIG SET of this node's that just finished: read the
			// policy again, so that each change is made, logged and counted once.
			if cur, err := c.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil && cur["maxmemory-policy"] == NoEviction {
				return
			}
			if err := c.ConfigSet(ctx, "maxmemory-policy", NoEviction).Err(); err != nil {
				w.log.Warn("maxmemory-policy not set to noeviction (the cluster has several DCs; retried at the next probe)",
					"group", gc.ID, "server", e.addr, "policy", e.policy, "err", err)
				return
			}
			w.noEvicts.Add(1)
			w.log.Warn("maxmemory-policy set to noeviction: with several DCs an evicted key would be lost in this DC only",
				"group", gc.ID, "server", e.addr, "was", e.policy)
		})
	}
}
