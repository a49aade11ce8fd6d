package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testredis"
	"github.com/redraft/redraft/node"
)

// Secrets of the dashboard test: neither may show anywhere on the page.
const (
	dashToken   = "DASHTOKEN-7c1e5a90b3"
	dashGroupPW = "DASHGROUPPW-e04b6d21f8"
)

// findChromium returns the path of a Chromium (Debian's `chromium`, which `make test` installs
// through scripts/ensure-chromium.sh), or skips the test saying how to get one.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("REDRAFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium found: the dashboard's browser test needs Debian's chromium package (apt-get install chromium; `make test` installs it) or REDRAFT_CHROMIUM=/path/to/chrome")
	return ""
}

// browser drives one headless Chromium tab; every step has a deadline and screenshots go to
// the test's temp dir (their paths are logged when the test fails).
type browser struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	shots []string
}

// newBrowser starts Chromium at path; start it after the cluster, so that its cleanup (the
// failure screenshot) runs while the cluster is still up.
func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	// chromedp logs CDP events it has no type for (a <dialog> entering the top layer): noise.
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); !strings.Contains(msg, "unhandled node event") {
			t.Logf("chromedp: %s", msg)
		}
	}))
	b := &browser{t: t, ctx: ctx, dir: t.TempDir()}
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		cancelB()
		cancelA()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() {
		cancelB()
		cancelA()
	})
	t.Cleanup(func() { // runs first: the browser is still up
		if !t.Failed() && os.Getenv("REDRAFT_DASHBOARD_KEEP") == "" {
			return
		}
		if t.Failed() {
			b.shot("failure")
		}
		// The temp dir goes with the test: keep the screenshots of a failure (or, with
		// REDRAFT_DASHBOARD_KEEP set, of any run) where they last.
		keep, err := os.MkdirTemp("", "redraft-dashboard-shots-")
		if err != nil {
			t.Logf("dashboard screenshots (removed with the test's temp dir): %s", strings.Join(b.shots, ", "))
			return
		}
		var kept []string
		for _, p := range b.shots {
			if data, err := os.ReadFile(p); err == nil && os.WriteFile(filepath.Join(keep, filepath.Base(p)), data, 0o644) == nil {
				kept = append(kept, filepath.Join(keep, filepath.Base(p)))
			}
		}
		t.Logf("dashboard screenshots: %s", strings.Join(kept, ", "))
	})
	return b
}

// run runs actions with a deadline of d.
func (b *browser) run(d time.Duration, actions ...chromedp.Action) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Run(ctx, actions...)
}

// must runs actions and fails the test on error.
func (b *browser) must(what string, actions ...chromedp.Action) {
	b.t.Helper()
	if err := b.run(15*time.Second, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval returns the string a JavaScript expression evaluates to.
func (b *browser) eval(js string) (string, error) {
	var out string
	err := b.run(5*time.Second, chromedp.Evaluate(js, &out))
	return out, err
}

// shot saves a screenshot of the whole page as NAME.png in the test's temp dir.
func (b *browser) shot(name string) string {
	var png []byte
	// From the top, so the sticky header is where it belongs in a full-page picture.
	if err := b.run(10*time.Second, chromedp.Evaluate(`window.scrollTo(0, 0)`, nil), chromedp.FullScreenshot(&png, 100)); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.shots = append(b.shots, p)
	return p
}

// waitText polls a JavaScript expression until it returns a string for which ok holds.
func (b *browser) waitText(d time.Duration, what, js string, ok func(string) bool) string {
	b.t.Helper()
	var got string
	waitFor(b.t, d, what, func() error {
		s, err := b.eval(js)
		if err != nil {
			return err
		}
		got = s
		if !ok(s) {
			return fmt.Errorf("page shows %q", s)
		}
		return nil
	})
	return got
}

// confirm clicks the confirmation dialog's button once the dialog is open, returning the
// dialog's text (what it says will happen).
func (b *browser) confirm() string {
	b.t.Helper()
	var text string
	b.must("confirmation dialog", chromedp.WaitVisible("#confirm[open] #c-ok", chromedp.ByQuery),
		chromedp.Text("#confirm", &text, chromedp.ByQuery), chromedp.Click("#c-ok", chromedp.ByQuery))
	return text
}

// apiError posts body to the admin API and returns the error the API answers, in its words.
func apiError(t *testing.T, addr, path string, body any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+addr+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+dashToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e struct{ Error string }
	_ = json.NewDecoder(res.Body).Decode(&e)
	if res.StatusCode < 400 || e.Error == "" {
		t.Fatalf("POST %s %s: status %d, error %q; want an error", path, b, res.StatusCode, e.Error)
	}
	return e.Error
}

// TestDashboard drives the dashboard in headless Chromium against three real nodes with two
// groups on real redis-server: the token prompt (and the API's refusal without it), members
// with the leader marked, the slot map, a migration started from the page whose progress bar
// moves until it is migrated (checked against the API), a bad action showing the API's error,
// and no secret anywhere on the page.
func TestDashboard(t *testing.T) {
	chrome := findChromium(t)
	r1, r2 := testredis.Start(t, testredis.WithPassword(dashGroupPW)), testredis.Start(t, testredis.WithPassword(dashGroupPW))
	c := NewCluster(t)
	tok := []string{"--admin-token", dashToken}
	n1 := c.NewNode("n1", "dc1", append(tok, "--tokens", "1000")...)
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n2 := c.NewNode("n2", "dc1", append(tok, "--tokens", "2000000000")...)
	n3 := c.NewNode("n3", "dc1", append(tok, "--tokens", "0")...)
	n2.Start(n1.Peer)
	n3.Start(n1.Peer)
	n2.WaitHealthy(30 * time.Second)
	n3.WaitHealthy(30 * time.Second)
	admin, err := node.NewClientWith(n1.Admin, node.ClientOptions{Token: dashToken}) // the node that serves the page
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, r := range []*testredis.Server{r1, r2} {
		g := fsm.Group{ID: fmt.Sprintf("g%d", i+1), Master: r.Addr, Password: dashGroupPW}
		if err := admin.AddGroup(ctx, "dc1", g); err != nil {
			t.Fatalf("add %s: %v", g.ID, err)
		}
	}
	for _, a := range []node.AssignRequest{{DC: "dc1", Group: "g1", Slots: []string{"0-8191"}}, {DC: "dc1", Group: "g2", Slots: []string{"8192-16383"}}} {
		if err := admin.AssignSlots(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: n1.Listen})
	defer rdb.Close()
	waitFor(t, 10*time.Second, "n1 routes", func() error { return rdb.Set(ctx, "probe", "1", 0).Err() })
	loadBulk(t, rdb, 8000) // about 1,000 keys in slots 0-2047
	stopLoad := liveLoad(t, []*proc{n1, n2, n3})
	defer stopLoad()
	b := newBrowser(t, chrome)

	// The API refuses a request without the token; the page's files need none.
	for path, want := range map[string]int{"/status": 401, "/": 200, "/ui/app.js": 200} {
		res, err := http.Get("http://" + n1.Admin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want || bytes.Contains(body, []byte(dashToken)) {
			t.Fatalf("GET %s without the token: %d, want %d", path, res.StatusCode, want)
		}
	}

	// Without a token the page asks for it, in the API's words.
	url := "http://" + n1.Admin + "/"
	b.must("load the page", chromedp.Navigate(url), chromedp.WaitVisible("#login-token", chromedp.ByID))
	why := b.waitText(10*time.Second, "the token prompt", `document.getElementById("login-why").textContent`,
		func(s string) bool { return strings.Contains(s, "admin token") })
	if main, _ := b.eval(`String(document.getElementById("main").hidden)`); main != "true" {
		t.Fatalf("cluster shown without the token (prompt says %q)", why)
	}
	b.shot("prompt")
	b.must("type the token", chromedp.SendKeys("#login-token", dashToken, chromedp.ByID),
		chromedp.Click("#login-form button", chromedp.ByQuery), chromedp.WaitVisible("#main", chromedp.ByID))

	// Members: three rows, the leader marked.
	st, err := admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := st.Leader
	b.waitText(20*time.Second, "three members with the leader marked",
		`[...document.querySelectorAll("#members tr")].map(r => r.children[0].textContent + "|" + r.children[4].textContent).join(",")`,
		func(s string) bool {
			return strings.Count(s, "|acting") == 3 && strings.Contains(s, "★ "+leader+"|") && strings.Count(s, "★") == 1
		})
	// Groups and the slot map: both groups with their ranges.
	b.waitText(10*time.Second, "slot map legend", `document.querySelector("#slotmaps .legend").textContent`,
		func(s string) bool {
			return strings.Contains(s, "g1 · 8,192 slots · 0-8191") && strings.Contains(s, "g2 · 8,192 slots · 8192-16383")
		})
	b.waitText(10*time.Second, "groups table", `document.getElementById("groups").textContent`,
		func(s string) bool { return strings.Contains(s, r1.Addr) && strings.Contains(s, r2.Addr) })
	b.waitText(10*time.Second, "a painted slot map", `(() => { const c = document.querySelector("#slotmaps canvas");
		const p = c.getContext("2d").getImageData(1, 1, 1, 1).data, q = c.getContext("2d").getImageData(c.width - 2, c.height - 2, 1, 1).data;
		return p.join(",") + "/" + q.join(","); })()`, func(s string) bool {
		p, q, _ := strings.Cut(s, "/")
		return p != q && p != "0,0,0,0" && q != "0,0,0,0" // slot 0 (g1) and slot 16383 (g2) in two colours
	})
	// The nodes' traffic: commands/s and latency percentiles per node.
	b.waitText(15*time.Second, "commands/s and p99 of every node",
		`[...document.querySelectorAll("#members tr")].map(r => r.children[7].textContent + "|" + r.children[9].textContent).join(",")`,
		func(s string) bool {
			rows := strings.Split(s, ",")
			for _, r := range rows {
				rate, p99, _ := strings.Cut(r, "|")
				if rate == "" || rate == "0" || rate == "–" || !strings.HasSuffix(p99, "s") {
					return false
				}
			}
			return len(rows) == 3
		})
	b.shot("overview")
	// Dark when the system prefers it, light otherwise.
	for _, scheme := range []string{"dark", "light"} {
		want := map[string]string{"dark": "rgb(18, 22, 28)", "light": "rgb(246, 247, 249)"}[scheme]
		b.must("prefer "+scheme, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}))
		b.waitText(5*time.Second, scheme+" colours", `getComputedStyle(document.body).backgroundColor`, func(s string) bool { return s == want })
		b.shot("overview-" + scheme)
	}

	// A bad action shows the API's error next to the action.
	bad := map[string]any{"dc": "dc1", "slots": []string{"0-100"}, "to": "nosuch", "rate": 0}
	want := apiError(t, n2.Admin, "/migrations", bad)
	b.must("fill a migration to an unknown group", chromedp.Click("#d-migrate summary", chromedp.ByQuery),
		chromedp.SetValue(`#f-migrate input[name=slots]`, "0-100", chromedp.ByQuery),
		chromedp.SetValue(`#f-migrate input[name=to]`, "nosuch", chromedp.ByQuery),
		chromedp.Click(`#f-migrate button[type=submit]`, chromedp.ByQuery))
	if said := b.confirm(); !strings.Contains(said, "Migrate slots 0-100 to nosuch in dc1") {
		t.Fatalf("confirmation says %q", said)
	}
	b.waitText(10*time.Second, "the API's error next to the form", `document.getElementById("err-migrate").textContent`,
		func(s string) bool { return s == want })

	// A migration started from the page: its bar moves, then it is migrated.
	b.must("fill a throttled migration", chromedp.SetValue(`#f-migrate input[name=slots]`, "0-2047", chromedp.ByQuery),
		chromedp.SetValue(`#f-migrate input[name=to]`, "g2", chromedp.ByQuery),
		chromedp.SetValue(`#f-migrate input[name=rate]`, "250", chromedp.ByQuery),
		chromedp.Click(`#f-migrate button[type=submit]`, chromedp.ByQuery))
	b.confirm()
	progress := map[string]bool{}
	state := b.waitText(60*time.Second, "the migration migrated on the page",
		`(() => { const r = document.querySelector("#migrations tr"); if (!r) return "";
			return r.querySelector(".state").textContent + "|" + r.querySelector(".progress").dataset.progress; })()`,
		func(s string) bool {
			st, p, _ := strings.Cut(s, "|")
			if st == "migrating" && p != "" {
				if !progress[p] && len(progress) == 1 {
					b.shot("migrating")
					readmeShot(b)
				}
				progress[p] = true
			}
			return st == "migrated"
		})
	if !strings.HasSuffix(state, "|100.0") {
		t.Fatalf("a migrated migration's bar shows %q, want 100.0", state)
	}
	moving := 0
	for p := range progress {
		if p != "0.0" && p != "100.0" {
			moving++
		}
	}
	if moving < 2 {
		t.Fatalf("the progress bar showed %v while migrating: want at least two values between 0 and 100", progress)
	}
	migs, err := admin.Migrations(ctx, "dc1", false)
	if err != nil || len(migs) != 1 || migs[0].State != fsm.MigrationDone || migs[0].To != "g2" || fmtSlots(migs[0].Slots) != "0-2047" {
		t.Fatalf("migrations per the API: %+v (%v), want one migrated 0-2047 to g2", migs, err)
	}
	if st, err := admin.Status(ctx); err != nil || ownerGroup(st, "dc1", 0) != "g2" || ownerGroup(st, "dc1", 2048) != "g1" {
		t.Fatalf("after the migration slot 0 is served by %q, slot 2048 by %q (%v); want g2 and g1",
			ownerGroup(st, "dc1", 0), ownerGroup(st, "dc1", 2048), err)
	}
	b.waitText(10*time.Second, "the slot map redrawn", `document.querySelector("#slotmaps .legend").textContent`,
		func(s string) bool { return strings.Contains(s, "g1 · 6,144 slots · 2048-8191") })
	b.shot("migrated")

	// Rebalance: the dry run's plan first (g2 now has the most), then the run, paused and
	// resumed from the page.
	b.must("plan a rebalance", chromedp.Click("#d-rebalance summary", chromedp.ByQuery),
		chromedp.SetValue(`#f-rebalance input[name=rate]`, "100", chromedp.ByQuery),
		// g2 has 5/8 of the keys but both groups have much the same memory: a tight tolerance.
		chromedp.SetValue(`#f-rebalance input[name=tolerance]`, "0.01", chromedp.ByQuery),
		chromedp.Click(`#f-rebalance button[type=submit]`, chromedp.ByQuery))
	b.waitText(20*time.Second, "the dry run's plan", `document.getElementById("plan").textContent`,
		func(s string) bool { return strings.Contains(s, "planned") && strings.Contains(s, "g2 → g1") })
	if migs, err := admin.Migrations(ctx, "dc1", true); err != nil || len(migs) != 0 {
		t.Fatalf("a dry run started migrations: %+v %v", migs, err)
	}
	b.shot("plan")
	b.must("start the plan", chromedp.Click("#plan button", chromedp.ByQuery))
	if said := b.confirm(); !strings.Contains(said, "from g2 to g1") {
		t.Fatalf("rebalance confirmation says %q", said)
	}
	started := b.waitText(20*time.Second, "the rebalance started", `document.getElementById("plan").textContent`,
		func(s string) bool { return strings.Contains(s, "Started: g2 → g1: migration #") })
	var rid uint64
	if _, err := fmt.Sscanf(started[strings.Index(started, "migration #"):], "migration #%d", &rid); err != nil || rid < 2 {
		t.Fatalf("no migration id in %q: %v", started, err)
	}
	row := fmt.Sprintf(`#migrations tr[data-key="%d"]`, rid)
	b.must("pause it", chromedp.Click(row+` button[data-a=pause]`, chromedp.ByQuery))
	b.confirm()
	b.waitText(10*time.Second, "paused on the page", `document.querySelector('`+row+` .state').textContent`,
		func(s string) bool { return s == "paused" })
	if m, err := admin.Migration(ctx, rid); err != nil || !m.Paused {
		t.Fatalf("migration %d after pause from the page: %+v %v", rid, m, err)
	}
	b.must("resume it", chromedp.Click(row+` button[data-a=resume]`, chromedp.ByQuery))
	b.confirm()
	b.waitText(60*time.Second, "the rebalance migrated on the page", `document.querySelector('`+row+` .state').textContent`,
		func(s string) bool { return s == "migrated" })
	if m, err := admin.Migration(ctx, rid); err != nil || m.State != fsm.MigrationDone || m.Paused {
		t.Fatalf("migration %d per the API: %+v %v", rid, m, err)
	}
	stopLoad()
	checkBulk(t, rdb, 8000)

	// Add a group with a password from the page, then remove it from the page.
	r3 := testredis.Start(t, testredis.WithPassword(dashGroupPW))
	b.must("fill a new group", chromedp.Click("#s-groups details summary", chromedp.ByQuery),
		chromedp.SetValue(`#f-group-add input[name=id]`, "g3", chromedp.ByQuery),
		chromedp.SetValue(`#f-group-add input[name=master]`, r3.Addr, chromedp.ByQuery),
		chromedp.SendKeys(`#f-group-add input[name=password]`, dashGroupPW, chromedp.ByQuery),
		chromedp.Click(`#f-group-add button[type=submit]`, chromedp.ByQuery))
	if said := b.confirm(); !strings.Contains(said, "Add group g3 to dc1") || strings.Contains(said, dashGroupPW) {
		t.Fatalf("add-group confirmation says %q", said)
	}
	g3row := `#groups tr[data-key="dc1/g3/` + r3.Addr + `"]`
	b.waitText(20*time.Second, "g3 up on the page", `(() => { const r = document.querySelector('`+g3row+`'); return r ? r.querySelector(".state").textContent : ""; })()`,
		func(s string) bool { return s == "up" })
	if pw, _ := b.eval(`document.querySelector("#f-group-add input[name=password]").value`); pw != "" {
		t.Fatal("the group password stays in the form after it was sent")
	}
	groupsPerAPI := func(want int) func() error { // as n1 sees them
		return func() error {
			st, err := admin.Status(ctx)
			if err != nil {
				return err
			}
			if len(st.DCs) != 1 || len(st.DCs[0].Groups) != want {
				return fmt.Errorf("groups %+v", st.DCs)
			}
			for _, g := range st.DCs[0].Groups {
				if g.Password != "set" {
					return fmt.Errorf("group %s password shows as %q", g.ID, g.Password)
				}
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "g3 per the API, its password set", groupsPerAPI(3))
	b.must("remove g3", chromedp.Click(g3row+" button.danger", chromedp.ByQuery))
	if said := b.confirm(); !strings.Contains(said, "Remove group g3 from dc1") {
		t.Fatalf("remove-group confirmation says %q", said)
	}
	b.waitText(20*time.Second, "g3 gone from the page", `String(document.querySelector('`+g3row+`') === null)`,
		func(s string) bool { return s == "true" })
	waitFor(t, 10*time.Second, "g3 gone per the API", groupsPerAPI(2))

	// What the page shows per node is in /metrics too, by command and by group.
	page := metrics(t, n1)
	for _, want := range []string{`redraft_commands_total{command="set"} `, `redraft_command_duration_seconds_bucket{command="get",le="0.001"} `,
		`redraft_command_duration_seconds_count{command="set"} `, "redraft_client_connections ", `redraft_backend_connects_total{group="g2"} `,
		`redraft_backend_dial_errors_total{group="g1"} 0`, "redraft_held_requests_total ", "redraft_tryagain_replies_total "} {
		if !strings.Contains(page, want) {
			t.Errorf("n1's /metrics lacks %q", want)
		}
	}

	// No secret anywhere on the page (the group password shows as "set" in the API only).
	html, err := b.eval(`document.documentElement.outerHTML + document.body.innerText`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{dashToken, dashGroupPW} {
		if strings.Contains(html, s) {
			t.Fatalf("the page shows a secret (%.6s...)", s)
		}
	}
}

// TestDashboardSendsJSONOnEveryChange runs the dashboard's own api() (dashboard/assets/app.js,
// as the node serves it) in the page, in headless Chromium, against a real node: its body-less
// POSTs and DELETEs (pause and cancel of a migration, removal of a group and of a node, none of
// which exists) reach their handlers and get the API's own 404 and words, not the 415 the API
// gives a change without the JSON content type (docs/security.md, "Admin API"); the same
// request sent by the page without that content type does get the 415.
func TestDashboardSendsJSONOnEveryChange(t *testing.T) {
	chrome := findChromium(t)
	c := NewCluster(t)
	n1 := c.NewNode("n1", "dc1")
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	b := newBrowser(t, chrome)
	b.must("load the page", chromedp.Navigate("http://"+n1.Admin+"/"), chromedp.WaitVisible("#main", chromedp.ByID))

	want := map[string]string{ // call -> what its handler answers
		"POST /migrations/999999/pause":  "migration 999999 does not exist",
		"POST /migrations/999999/cancel": "migration 999999 does not exist",
		"DELETE /groups/dc1/nope":        "group nope does not exist in datacenter dc1",
		"DELETE /nodes/nope":             "node nope is not a member",
	}
	js := `(async () => {
		const out = [];
		for (const call of ` + mustJSON(t, slices.Sorted(maps.Keys(want))) + `) {
			const [method, path] = call.split(" ");
			try { await api(method, path); out.push({call, status: 200, msg: ""}); }
			catch (e) { out.push({call, status: e.status, msg: e.message}); }
		}
		// The control: one of them without the JSON content type, as a cross-site page sends it.
		const res = await fetch("/migrations/999999/cancel", {method: "POST", cache: "no-store"});
		out.push({call: "control", status: res.status, msg: (await res.json()).code || ""});
		return out;
	})()`
	var got []struct {
		Call   string
		Status int
		Msg    string
	}
	b.must("the page's api() calls", chromedp.Evaluate(js, &got, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	}))
	if len(got) != len(want)+1 {
		t.Fatalf("the page answered %+v, want %d calls and the control", got, len(want))
	}
	for _, g := range got[:len(want)] {
		if g.Status != http.StatusNotFound || !strings.Contains(g.Msg, want[g.Call]) {
			t.Errorf("the dashboard's %s: %d %q, want its handler's 404 %q", g.Call, g.Status, g.Msg, want[g.Call])
		}
	}
	if ctl := got[len(want)]; ctl.Status != http.StatusUnsupportedMediaType || ctl.Msg != "unsupported_media_type" {
		t.Errorf("a body-less POST without Content-Type from the page: %d %q, want 415 unsupported_media_type", ctl.Status, ctl.Msg)
	}
}

// mustJSON is v as JSON, for a script.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// liveLoad sends a modest stream of SETs and GETs through every node until the returned stop
// is called (answers are not checked: a write may meet a freeze and get TRYAGAIN).
func liveLoad(t *testing.T, nodes []*proc) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	var clients []*redis.Client
	for _, p := range nodes {
		clients = append(clients, redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1}))
	}
	go func() {
		defer close(done)
		ctx := context.Background()
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			c := clients[i%len(clients)]
			key := fmt.Sprintf("live:%d", i%500)
			c.Set(ctx, key, i, 0)
			c.Get(ctx, key)
			time.Sleep(2 * time.Millisecond) // pacing: a few hundred commands/s, not synchronisation
		}
	}()
	var once bool
	return func() {
		if once {
			return
		}
		once = true
		close(quit)
		<-done
		for _, c := range clients {
			c.Close()
		}
	}
}

// readmeShot writes the whole page (1280 wide) as PNG to $REDRAFT_DASHBOARD_SHOT when set: how
// docs/dashboard.png is made.
func readmeShot(b *browser) {
	path := os.Getenv("REDRAFT_DASHBOARD_SHOT")
	if path == "" {
		return
	}
	var png []byte
	if err := b.run(10*time.Second, chromedp.Evaluate(`window.scrollTo(0, 0)`, nil), chromedp.FullScreenshot(&png, 100)); err != nil {
		b.t.Logf("README screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("README screenshot: %v", err)
	}
}

// fmtSlots writes slot ranges as the API's strings, comma separated.
func fmtSlots(rs []fsm.SlotRange) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return strings.Join(out, ",")
}
