package node

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redraft/redraft/dashboard"
	"github.com/redraft/redraft/fsm"
)

// AssignRequest is the body of POST /slots/assign.
type AssignRequest struct {
	DC    string   `json:"dc"`
	Group string   `json:"group"`
	Slots []string `json:"slots"`
	Force bool     `json:"force,omitempty"`
}

// GroupUpdate is the body of PUT /groups/{dc}/{id}: the group's new master and replicas, and
// its backend password only when it changes (absent or null: kept; "": none from now on).
// Passwords go in this way and never come out: answers show them as "set" or "unset".
type GroupUpdate struct {
	// ID is ignored (the path names the group); accepted so a group's JSON can be sent back.
	ID       string   `json:"id,omitempty"`
	Master   string   `json:"master"`
	Replicas []string `json:"replicas,omitempty"`
	// User is the backends' admin user (absent: unchanged).
	User     *string `json:"user,omitempty"`
	Password *string `json:"password,omitempty"`
	// Priority ranks replicas for promotion (lower first, 0 never; default 100), by address.
	Priority map[string]int `json:"priority,omitempty"`
}

// SettingRequest is the body of PUT /config/{key}.
type SettingRequest struct {
	Value string `json:"value"`
}

// SlotsReply is the answer of GET /slots: per DC, per group, the slot ranges.
type SlotsReply map[string]map[string][]string

// adminHandler serves the admin HTTP API (JSON) on admin_listen.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	// The web dashboard: a static page that reads this API with the token the user gives it.
	ui := dashboard.Handler()
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET /ui/", ui)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		addr, id := n.raft.LeaderWithID()
		body := map[string]any{"node": n.cfg.ID, "leader": string(id), "leader_peer": string(addr)}
		if why := n.RemovedReason(); why != "" {
			body["error"] = why
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		if _, ok := n.State().Nodes[n.cfg.ID]; !ok || addr == "" {
			body["error"] = "not ready: no leader known or this node is not registered yet"
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		if acting, why := n.Acting(); !acting {
			body["error"] = "not ready: " + why.Error()
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		body["ok"] = true
		writeJSON(w, http.StatusOK, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	// Go's profiles (CPU, heap, goroutines), behind the admin token like the rest: where a
	// node's time goes, e.g. go tool pprof http://ADMIN/debug/pprof/profile?seconds=10.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status(r.Context()))
	})
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status(r.Context()).Members)
	})
	mux.HandleFunc("DELETE /nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		n.answer(w, n.Remove(r.Context(), r.PathValue("id")))
	})
	mux.HandleFunc("GET /groups", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.Status(r.Context()).DCs)
	})
	mux.HandleFunc("POST /groups", func(w http.ResponseWriter, r *http.Request) {
		var c fsm.AddGroup
		if err := readJSON(r, &c); err != nil {
			writeError(w, err)
			return
		}
		// "." and "..": the state takes them (its rule cannot change without a field asking
		// for it), but no path can name such a group again: Go's mux redirects
		// /groups/dc1/.. to /groups, so it could not be removed or changed.
		for _, v := range []string{c.DC, c.Group.ID} {
			if v == "." || v == ".." {
				writeError(w, &fsm.Error{Code: "invalid", Msg: fmt.Sprintf("%q is no name for a datacenter or group: a URL path cannot name it", v)})
				return
			}
		}
		// A group the state refuses (one that exists, an address of another group) connects
		// to nothing.
		if _, err := n.dryRun(r.Context(), &c); err != nil {
			writeError(w, err)
			return
		}
		if err := n.PrepareGroup(r.Context(), &c.Group); err != nil {
			writeError(w, err)
			return
		}
		n.answer(w, n.Propose(r.Context(), &c))
	})
	mux.HandleFunc("PUT /groups/{dc}/{id}", func(w http.ResponseWriter, r *http.Request) {
		var req GroupUpdate
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		dc := r.PathValue("dc")
		g := fsm.Group{ID: r.PathValue("id"), Master: req.Master, Replicas: req.Replicas, Priority: req.Priority}
		if req.User != nil {
			g.User = *req.User
		}
		if req.Password != nil {
			g.Password = *req.Password
		}
		cmd := &fsm.UpdateGroup{DC: dc, Group: g, KeepPassword: req.Password == nil, KeepUser: req.User == nil, KeepFenced: true}
		// An update the state refuses (no such group, a failover in progress, an address of
		// another group) connects to no server.
		st, err := n.dryRun(r.Context(), cmd)
		if err != nil {
			writeError(w, err)
			return
		}
		// The admin credentials the group will have: what the request gives, else the current.
		cur := st.DCs[dc].Groups[g.ID]
		if req.User == nil {
			cmd.Group.User = cur.User // what the state keeps anyway (KeepUser)
		}
		prep := cmd.Group
		prep.Password = cur.Password
		if req.Password != nil {
			prep.Password = *req.Password
		} else if err := storedPasswordStays(dc, cur, &g); err != nil {
			writeError(w, err)
			return
		}
		if err := n.PrepareGroup(r.Context(), &prep); err != nil {
			writeError(w, err)
			return
		}
		n.answer(w, n.Propose(r.Context(), cmd))
	})
	mux.HandleFunc("DELETE /groups/{dc}/{id}", func(w http.ResponseWriter, r *http.Request) {
		n.answer(w, n.Propose(r.Context(), &fsm.RemoveGroup{DC: r.PathValue("dc"), ID: r.PathValue("id")}))
	})
	mux.HandleFunc("GET /slots", func(w http.ResponseWriter, r *http.Request) {
		st := n.State()
		out := SlotsReply{}
		for name, dc := range st.DCs {
			if want := r.URL.Query().Get("dc"); want != "" && want != name {
				continue
			}
			out[name] = map[string][]string{}
			for g, ranges := range dc.SlotRanges() {
				key := g
				if key == "" {
					key = "(unassigned)"
				}
				for _, rg := range ranges {
					out[name][key] = append(out[name][key], rg.String())
				}
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /slots/assign", func(w http.ResponseWriter, r *http.Request) {
		var req AssignRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		ranges, err := fsm.ParseSlotRanges(req.Slots...)
		if err == nil && len(ranges) > fsm.NumSlots {
			err = fmt.Errorf("%d slot ranges: give at most %d (merge them: 0-16383)", len(ranges), fsm.NumSlots)
		}
		if err != nil {
			writeError(w, &fsm.Error{Code: "invalid", Msg: err.Error()})
			return
		}
		// Merged first, as a migration's: every node applies the entry slot by slot, and a
		// list of a million copies of 0-16383 held each node's apply loop for minutes.
		n.answer(w, n.Propose(r.Context(), &fsm.AssignSlots{DC: req.DC, Group: req.Group, Ranges: normalise(ranges), Force: req.Force}))
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		st := n.State()
		out := []ConfigItem{}
		for _, k := range fsm.SettingKeys() {
			out = append(out, ConfigItem{Key: k, Value: st.Setting(k), Help: fsm.SettingHelp(k)})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("PUT /config/{key}", func(w http.ResponseWriter, r *http.Request) {
		var req SettingRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		n.answer(w, n.Propose(r.Context(), &fsm.SetSetting{Key: r.PathValue("key"), Value: req.Value}))
	})
	n.migrationRoutes(mux)
	n.failoverRoutes(mux)
	return mux
}

// dryRun tries cmd on this node's state, as the leader will (the state machine is pure), so a
// request the state refuses is refused before it touches anything outside the cluster. When
// the state refuses it on a follower, the follower first catches up with the leader's applied
// index and tries again: it may not have applied a change the leader already answered for
// (a group added through this node a moment ago). It returns the state it tried.
func (n *Node) dryRun(ctx context.Context, cmd fsm.Command) (*fsm.State, error) {
	st := n.State()
	_, err := fsm.ApplyCommand(st, st.Index+1, cmd)
	if err == nil || n.raft.State() == raft.Leader {
		return st, err
	}
	target, rerr := n.readIndex(ctx)
	if rerr != nil {
		return st, err
	}
	st = n.waitLocal(ctx, func(st *fsm.State) bool { return st.Index >= target })
	_, err = fsm.ApplyCommand(st, st.Index+1, cmd)
	return st, err
}

// storedPasswordStays refuses an update that would send the group's stored admin password to
// a server that is not already one of the group's (master, replicas, fenced former masters):
// whoever may call the admin API could otherwise collect it with a Redis of their own. The
// request must then carry the password itself.
func storedPasswordStays(dc string, cur *fsm.Group, next *fsm.Group) error {
	if cur.Password == "" {
		return nil // nothing secret to send
	}
	known := map[string]bool{}
	for _, a := range cur.Servers() {
		known[a] = true
	}
	var added []string
	for _, a := range append([]string{next.Master}, next.Replicas...) {
		if !known[a] {
			added = append(added, a)
		}
	}
	if len(added) == 0 {
		return nil
	}
	verb := "is"
	if len(added) > 1 {
		verb = "are"
	}
	return &fsm.Error{Code: "invalid", Msg: fmt.Sprintf(
		"group %s in datacenter %s: %s %s not a server of the group yet, and redraft sends the group's stored password only to its current servers: "+
			"pass the group's admin password with the update (field \"password\" of PUT /groups/%s/%s; redraft group update: --password or REDRAFT_GROUP_PASSWORD)",
		cur.ID, dc, strings.Join(added, ", "), verb, dc, cur.ID)}
}

// answer writes {"ok":true} or the error.
func (n *Node) answer(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "index": n.State().Index})
}
