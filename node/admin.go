package node

import (
	"net/http"
	"net/http/pprof"

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
		g := fsm.Group{ID: r.PathValue("id"), Master: req.Master, Replicas: req.Replicas, Priority: req.Priority}
		// The admin credentials the group will have: what the request gives, else the current.
		prep := g
		if cur := n.State().DCs[r.PathValue("dc")]; cur != nil && cur.Groups[g.ID] != nil {
			prep.User, prep.Password = cur.Groups[g.ID].User, cur.Groups[g.ID].Password
		}
		g.User = prep.User
		if req.User != nil {
			g.User, prep.User = *req.User, *req.User
		}
		if req.Password != nil {
			g.Password, prep.Password = *req.Password, *req.Password
		}
		if err := n.PrepareGroup(r.Context(), &prep); err != nil {
			writeError(w, err)
			return
		}
		n.answer(w, n.Propose(r.Context(), &fsm.UpdateGroup{DC: r.PathValue("dc"), Group: g, KeepPassword: req.Password == nil,
			KeepUser: req.User == nil}))
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
		if err != nil {
			writeError(w, &fsm.Error{Code: "invalid", Msg: err.Error()})
			return
		}
		n.answer(w, n.Propose(r.Context(), &fsm.AssignSlots{DC: req.DC, Group: req.Group, Ranges: ranges, Force: req.Force}))
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

// answer writes {"ok":true} or the error.
func (n *Node) answer(w http.ResponseWriter, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "index": n.State().Index})
}
