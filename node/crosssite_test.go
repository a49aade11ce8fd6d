package node

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/redraft/redraft/fsm"
)

// browserCall sends one admin request as a browser (or a DNS-rebinding page) could: with the
// given Host header ("" keeps the address's), and headers (Content-Type, Origin,
// Authorization). It returns the status and the decoded JSON error, if any.
func browserCall(t *testing.T, n *Node, method, path, host string, hdr map[string]string, body string) (int, rpcError) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e rpcError
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e
}

// wantRefused asserts a refusal's status, code and that its message says what to do.
func wantRefused(t *testing.T, what string, code int, e rpcError, wantCode int, wantErr string, says ...string) {
	t.Helper()
	if code != wantCode || e.Code != wantErr {
		t.Errorf("%s: %d %q (%s), want %d %s", what, code, e.Code, e.Error, wantCode, wantErr)
		return
	}
	for _, s := range says {
		if !strings.Contains(e.Error, s) {
			t.Errorf("%s: the error %q does not say %q", what, e.Error, s)
		}
	}
}

// TestAdminRefusesCrossSiteRequests: on a node without an admin token (the default), what a
// web page in the operator's browser can send is refused before any handler runs: a "simple"
// cross-site POST (text/plain, a form, no Content-Type) gets 415 and changes nothing; a
// request whose Host is a name the node does not know (DNS rebinding) gets 403, reads and
// changes alike, while IP addresses, localhost, an empty Host and the node's own address are
// served, and the open paths stay open to any Host for GET; a request with another site's
// Origin gets 403. Every refusal is a JSON error that says what to do, and is logged.
func TestAdminRefusesCrossSiteRequests(t *testing.T) {
	n, logs := startLogged(t, t.TempDir(), Config{ID: "n1"})
	waitReady(t, n)
	_, port, _ := net.SplitHostPort(n.AdminAddr())
	jsonCT := map[string]string{"Content-Type": "application/json"}
	group := `{"dc":"dc1","group":{"id":"g1","master":"` + freeAddr(t) + `"}}`

	// The simple requests a page can send cross-site without a CORS preflight.
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "", "application/json, text/plain", "application/jsonx"} {
		for _, rq := range [][2]string{{"/groups", group}, {"/slots/assign", `{"dc":"dc1","group":"g1","slots":["0-16383"]}`}} {
			hdr := map[string]string{}
			if ct != "" {
				hdr["Content-Type"] = ct
			}
			code, e := browserCall(t, n, "POST", rq[0], "", hdr, rq[1])
			wantRefused(t, "POST "+rq[0]+" as "+ct, code, e, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type: application/json")
		}
	}
	if dc := n.State().DCs["dc1"]; dc != nil && len(dc.Groups) > 0 {
		t.Fatalf("a text/plain POST added a group: %v", dc.Groups)
	}
	// Every change, with or without a body, needs the JSON content type: no handler runs.
	for _, rt := range adminRoutes(t) {
		if rt[0] != "GET" {
			code, e := browserCall(t, n, rt[0], rt[1], "", nil, "{}")
			wantRefused(t, rt[0]+" "+rt[1]+" without Content-Type", code, e, http.StatusUnsupportedMediaType, "unsupported_media_type")
		}
	}
	// JSON with parameters is JSON.
	if code, e := browserCall(t, n, "POST", "/groups", "", map[string]string{"Content-Type": "Application/JSON; charset=utf-8"}, group); code != http.StatusOK {
		t.Fatalf("POST /groups as application/json; charset=utf-8: %d %s", code, e.Error)
	}

	// DNS rebinding: a name of the attacker's that resolves to this port.
	evil := "evil.example:" + port
	code, e := browserCall(t, n, "GET", "/status", evil, nil, "")
	wantRefused(t, "GET /status with Host "+evil, code, e, http.StatusForbidden, "host_not_allowed", "admin_token", "127.0.0.1")
	code, e = browserCall(t, n, "PUT", "/config/convergence", evil, jsonCT, `{"value":"false"}`)
	wantRefused(t, "PUT /config with Host "+evil, code, e, http.StatusForbidden, "host_not_allowed")
	code, e = browserCall(t, n, "DELETE", "/nodes/n1", "EVIL.example", jsonCT, "")
	wantRefused(t, "DELETE /nodes/n1 with Host EVIL.example", code, e, http.StatusForbidden, "host_not_allowed")
	code, e = browserCall(t, n, "GET", "/status", "localhost.evil.example:"+port, nil, "")
	wantRefused(t, "GET /status with Host localhost.evil.example", code, e, http.StatusForbidden, "host_not_allowed")
	if _, ok := n.State().Nodes["n1"]; !ok || n.RemovedReason() != "" {
		t.Fatal("a rebinding DELETE /nodes/n1 removed the node")
	}
	// The open paths answer GETs that name the node any way (monitoring, health checks).
	for _, path := range []string{"/healthz", "/metrics", "/", "/ui/app.js"} {
		if code, e := browserCall(t, n, "GET", path, evil, nil, ""); code != http.StatusOK {
			t.Errorf("GET %s with Host %s: %d %s, want 200 (open path)", path, evil, code, e.Error)
		}
	}
	// Addresses a rebinding page cannot take: IP literals, localhost, the node's own address.
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LocalHost", "[::1]:" + port, "10.1.2.3", n.AdminAddr()} {
		if code, e := browserCall(t, n, "GET", "/status", host, nil, ""); code != http.StatusOK {
			t.Errorf("GET /status with Host %q: %d %s, want 200", host, code, e.Error)
		}
	}
	// HTTP/1.0 without a Host header.
	conn, err := net.Dial("tcp", n.AdminAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /status HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /status without a Host header: %d, want 200", resp.StatusCode)
	}

	// Origin: only this API's own address, for reads and changes.
	own := "127.0.0.1:" + port
	for _, origin := range []string{"http://evil.example", "http://evil.example:" + port, "null", "http://localhost:" + port, "https://127.0.0.1"} {
		code, e := browserCall(t, n, "POST", "/slots/assign", own, map[string]string{"Content-Type": "application/json", "Origin": origin},
			`{"dc":"dc1","group":"g1","slots":["0-16383"]}`)
		wantRefused(t, "POST /slots/assign from "+origin, code, e, http.StatusForbidden, "cross_origin", "another site")
		code, e = browserCall(t, n, "GET", "/status", own, map[string]string{"Origin": origin}, "")
		wantRefused(t, "GET /status from "+origin, code, e, http.StatusForbidden, "cross_origin")
	}
	if dc := n.State().DCs["dc1"]; dc.SlotCount("g1") != 0 {
		t.Fatal("a cross-origin POST /slots/assign assigned slots")
	}
	// The node's own page (same origin) works.
	code, e = browserCall(t, n, "POST", "/slots/assign", own, map[string]string{"Content-Type": "application/json", "Origin": "http://" + own},
		`{"dc":"dc1","group":"g1","slots":["0-16383"]}`)
	if code != http.StatusOK || n.State().DCs["dc1"].SlotCount("g1") == 0 {
		t.Fatalf("POST /slots/assign from the node's own origin: %d %s", code, e.Error)
	}
	if !strings.Contains(logs.String(), "admin request refused") {
		t.Error("no refusal logged")
	}
	// The CLI's client sends what the API wants.
	if _, err := NewClient(n.AdminAddr()).Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := NewClient(n.AdminAddr()).RemoveGroup(context.Background(), "dc1", "nope"); err == nil || strings.Contains(err.Error(), "Content-Type") {
		t.Fatalf("a body-less DELETE through the client: %v, want the handler's not_found", err)
	}
}

// TestAdminCrossSiteWithToken: with an admin token any Host is fine (the token is the
// defence, and a page cannot send it), but another site's Origin and a non-JSON change are
// still refused.
func TestAdminCrossSiteWithToken(t *testing.T) {
	n, logs := startLogged(t, t.TempDir(), Config{ID: "n1", AdminToken: testToken})
	waitReady(t, n)
	_, port, _ := net.SplitHostPort(n.AdminAddr())
	evil := "evil.example:" + port
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	if code, e := browserCall(t, n, "GET", "/status", evil, auth, ""); code != http.StatusOK {
		t.Errorf("GET /status with the token and Host %s: %d %s, want 200", evil, code, e.Error)
	}
	code, e := browserCall(t, n, "GET", "/status", evil, nil, "")
	wantRefused(t, "GET /status without the token", code, e, http.StatusUnauthorized, "unauthorized")
	code, e = browserCall(t, n, "GET", "/status", "", map[string]string{"Authorization": "Bearer " + testToken, "Origin": "http://evil.example"}, "")
	wantRefused(t, "GET /status from another origin with the token", code, e, http.StatusForbidden, "cross_origin")
	code, e = browserCall(t, n, "PUT", "/config/convergence", "", map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "text/plain"}, `{"value":"false"}`)
	wantRefused(t, "PUT /config as text/plain with the token", code, e, http.StatusUnsupportedMediaType, "unsupported_media_type")
	code, e = browserCall(t, n, "PUT", "/config/convergence", evil, map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}, `{"value":"false"}`)
	if code != http.StatusOK {
		t.Errorf("PUT /config as JSON with the token and Host %s: %d %s", evil, code, e.Error)
	}
	assertNoSecrets(t, "logs", logs.String())
}

// TestAdminRefusesOtherSitesGets: a GET carries no Origin, so an image tag of any page could
// start a long CPU profile or trace, or a goroutine dump that stops the node for a moment, on
// a node without an admin token (until session 47). A request the browser marks as another
// site's (Sec-Fetch-Site) is refused now, but for a click on a link to the dashboard or an open
// path; the dashboard's own calls (same-origin), a typed address (none) and the CLI (no
// header) are served.
func TestAdminRefusesOtherSitesGets(t *testing.T) {
	n, _ := startLogged(t, t.TempDir(), Config{ID: "n1"})
	waitReady(t, n)
	for _, site := range []string{"cross-site", "same-site"} {
		for _, path := range []string{"/debug/pprof/goroutine?debug=2", "/debug/pprof/heap?gc=1", "/status", "/groups"} {
			for _, mode := range []string{"no-cors", "navigate"} {
				code, e := browserCall(t, n, "GET", path, "", map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode}, "")
				wantRefused(t, "GET "+path+" "+site+" "+mode, code, e, http.StatusForbidden, "cross_site", "another site")
			}
		}
		for _, path := range []string{"/healthz", "/metrics"} {
			if code, e := browserCall(t, n, "GET", path, "", map[string]string{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"}, ""); code != http.StatusOK {
				t.Errorf("a link from another site to %s: %d %s", path, code, e.Error)
			}
		}
	}
	for _, site := range []string{"same-origin", "none", ""} {
		hdr := map[string]string{}
		if site != "" {
			hdr["Sec-Fetch-Site"] = site
		}
		if code, e := browserCall(t, n, "GET", "/debug/pprof/goroutine?debug=1", "", hdr, ""); code != http.StatusOK {
			t.Errorf("GET pprof with Sec-Fetch-Site %q: %d %s", site, code, e.Error)
		}
	}
}

// TestClientShowsNoPasswordAndFollowsNoRedirect: a password in --admin's address is not
// printed in the client's errors (until session 47 it was); a path with ".." is an error (Go's
// mux redirects it; the client no longer follows redirects, which turned DELETE /nodes/.. into
// a GET / that the binary's dashboard answers with 200); and no group can be named so.
func TestClientShowsNoPasswordAndFollowsNoRedirect(t *testing.T) {
	cl := NewClient("http://ops:hunter2@" + freeAddr(t))
	_, err := cl.Status(context.Background())
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "xxxxx@") {
		t.Fatalf("error %v", err)
	}
	n, _ := startLogged(t, t.TempDir(), Config{ID: "n1"})
	waitReady(t, n)
	c := NewClient(n.AdminAddr())
	if err := c.RemoveGroup(context.Background(), "dc1", ".."); err == nil {
		t.Fatal("removing group .. succeeded")
	}
	if err := c.RemoveNode(context.Background(), ".."); err == nil { // redirected to GET /
		t.Fatal("removing node .. succeeded")
	}
	for _, id := range []string{".", ".."} {
		err := c.AddGroup(context.Background(), "dc1", fsm.Group{ID: id, Master: freeAddr(t)})
		if err == nil || !strings.Contains(err.Error(), "no name") {
			t.Fatalf("group %q added: %v", id, err)
		}
	}
}
