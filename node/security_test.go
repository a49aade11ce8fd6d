package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/testcert"
)

// Distinctive secrets: none of these may appear in any answer, log line or metric.
const (
	testClientPW  = "CLIENT-PW-7f3a9c1e55"
	testGroupPW   = "GROUP-PW-b81d2e4f90"
	testGroupPW2  = "GROUP-PW2-c04e7a1b36"
	testToken     = "ADMIN-TOKEN-e9d45b0a27c3"
	testSecret    = "CLUSTER-SECRET-4c8f1d6a2e0b"
	testBadSecret = "CLUSTER-SECRET-WRONG-0000000"
)

var testSecrets = []string{testClientPW, testGroupPW, testGroupPW2, testToken, testSecret}

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLogged starts a node with cfg (filled with loopback ports and a data dir under dir),
// its logs, Raft's included, captured at debug level; it does not wait for it to be ready.
func startLogged(t *testing.T, dir string, cfg Config) (*Node, *syncBuffer) {
	t.Helper()
	if cfg.DC == "" {
		cfg.DC = "dc1"
	}
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(t), "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, cfg.ID)
	buf := &syncBuffer{}
	var out io.Writer = buf
	if testing.Verbose() {
		out = io.MultiWriter(buf, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := Start(cfg, Options{Logger: log, LogOutput: out})
	if err != nil {
		t.Fatalf("start %s: %v", cfg.ID, err)
	}
	t.Cleanup(func() { n.Close() })
	return n, buf
}

func waitReady(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// adminRoutes reads the admin API's routes from its source, so a new endpoint is covered by
// the token tests without anyone remembering to list it.
func adminRoutes(t *testing.T) [][2]string {
	t.Helper()
	re := regexp.MustCompile(`mux\.Handle(?:Func)?\("([A-Z]+) (/[^"]*)"`)
	var out [][2]string
	files, err := filepath.Glob("admin*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			path := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(strings.ReplaceAll(m[2], "{$}", ""), "1")
			if path == "/ui/" { // the dashboard's files
				path = "/ui/app.js"
			}
			out = append(out, [2]string{m[1], path})
		}
	}
	if len(out) < 15 {
		t.Fatalf("found only %d admin routes in the source: %v", len(out), out)
	}
	return out
}

// adminCall sends one request to the node's admin API with the given Authorization header
// ("" for none) and returns the status and body.
func adminCall(t *testing.T, base, method, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json") // as the CLI and the dashboard do
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminTokenRequired: with admin_token set, every endpoint but /healthz, /metrics and the
// dashboard's static page refuses a request without the token or with a wrong one (401, a JSON
// error that says how to pass it) and serves one with it; admin_open_metrics: false closes
// /metrics too.
func TestAdminTokenRequired(t *testing.T) {
	dir := t.TempDir()
	closed := false
	n, logs := startLogged(t, dir, Config{ID: "n1", AdminToken: testToken, AdminOpenMetrics: &closed})
	waitReady(t, n)
	base := "http://" + n.AdminAddr()
	for _, rt := range adminRoutes(t) {
		method, path := rt[0], rt[1]
		for _, auth := range []string{"", "Bearer " + testBadSecret, "Basic " + testToken, testToken} {
			code, body := adminCall(t, base, method, path, auth, "{}")
			if path == "/healthz" || path == "/" || strings.HasPrefix(path, "/ui/") {
				if code != http.StatusOK {
					t.Errorf("%s %s with %q: %d, want 200 (open)", method, path, auth, code)
				}
				continue
			}
			var e rpcError
			if code != http.StatusUnauthorized || json.Unmarshal([]byte(body), &e) != nil || e.Code != "unauthorized" ||
				!strings.Contains(e.Error, "Authorization: Bearer") || !strings.Contains(e.Error, "REDRAFT_ADMIN_TOKEN") {
				t.Errorf("%s %s with %q: %d %s, want 401 with a JSON error saying how to pass the token", method, path, auth, code, body)
			}
		}
		if code, body := adminCall(t, base, method, path, "Bearer "+testToken, "{}"); code == http.StatusUnauthorized {
			t.Errorf("%s %s with the token: %d %s", method, path, code, body)
		}
	}
	// The dashboard's page and files load without the token; they hold no cluster data.
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		if code, body := adminCall(t, base, "GET", path, "", ""); code != http.StatusOK || strings.Contains(body, `"leader":`) {
			t.Errorf("GET %s without the token: %d, want 200 and no cluster data", path, code)
		}
	}
	// The client with the token works; without it, it gets the error that says how.
	ctx := context.Background()
	cl, err := NewClientWith(n.AdminAddr(), ClientOptions{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := cl.Status(ctx); err != nil || st.Node != "n1" {
		t.Fatalf("status with the token: %+v %v", st, err)
	}
	var ae *APIError
	if _, err := NewClient(n.AdminAddr()).Status(ctx); !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(ae.Msg, "--admin-token") {
		t.Fatalf("status without the token: %v", err)
	}
	poll(t, 5*time.Second, "the wrong token logged", func() error {
		if !strings.Contains(logs.String(), "admin request with a wrong token refused") {
			return errors.New("not yet")
		}
		return nil
	})
	assertNoSecrets(t, "logs", logs.String())

	// Open metrics by default; the node warns about an admin API without a token.
	open, logs2 := startLogged(t, dir, Config{ID: "n2"})
	if code, _ := adminCall(t, "http://"+open.AdminAddr(), "GET", "/metrics", "", ""); code != http.StatusOK {
		t.Errorf("/metrics on a node without a token: %d", code)
	}
	for _, want := range []string{"the admin API is open", "the peer port is open"} {
		if !strings.Contains(logs2.String(), want) {
			t.Errorf("no warning %q at start:\n%s", want, logs2.String())
		}
	}
}

// TestAdminTLS: with admin_tls_cert_file, the admin port speaks HTTPS; the client trusts it
// with the CA, refuses it without, and a plain-HTTP client is told to use https://.
func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	cert := testcert.New(t, dir, "admin", ca, false)
	n, _ := startLogged(t, dir, Config{ID: "n1", AdminToken: testToken, AdminTLSCertFile: cert.CertFile, AdminTLSKeyFile: cert.KeyFile})
	waitReady(t, n)
	ctx := context.Background()
	cl, err := NewClientWith(n.AdminAddr(), ClientOptions{Token: testToken, CAFile: ca.CertFile})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := cl.Status(ctx); err != nil || st.Node != "n1" {
		t.Fatalf("status over HTTPS: %v", err)
	}
	noCA, _ := NewClientWith("https://"+n.AdminAddr(), ClientOptions{Token: testToken})
	if _, err := noCA.Status(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("HTTPS without the CA: %v, want a certificate error", err)
	}
	if _, err := NewClient(n.AdminAddr()).Status(ctx); err == nil || !strings.Contains(err.Error(), "speaks HTTPS") {
		t.Fatalf("plain HTTP to an HTTPS admin port: %v", err)
	}
	// With a token and no scheme, the client asks without the token first and goes on over
	// HTTPS (here refused: the certificate is not from a CA this system trusts), so the token
	// never crosses in clear.
	guess, _ := NewClientWith(n.AdminAddr(), ClientOptions{Token: testToken})
	if _, err := guess.Status(ctx); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("a token with no scheme to an HTTPS admin port: %v, want HTTPS and a certificate error", err)
	}
}

// refusedJoin starts a node that tries to join seed with cfg and waits until both sides have
// logged the refusal (want, in both logs); the seed's membership must not change.
func refusedJoin(t *testing.T, dir string, seed *Node, seedLog *syncBuffer, cfg Config, want string) {
	t.Helper()
	cfg.Seeds = []string{seed.PeerAddr()}
	rogue, rogueLog := startLogged(t, dir, cfg)
	poll(t, 20*time.Second, cfg.ID+"'s refusal logged on both sides", func() error {
		if !strings.Contains(seedLog.String(), want) {
			return fmt.Errorf("seed log lacks %q", want)
		}
		if !strings.Contains(rogueLog.String(), want) {
			return fmt.Errorf("joiner log lacks %q:\n%s", want, rogueLog.String())
		}
		return nil
	})
	st := seed.State()
	if _, ok := st.Nodes[cfg.ID]; ok || len(st.Nodes) != 1 {
		t.Fatalf("%s got in: nodes %v", cfg.ID, st.NodeIDs())
	}
	f := seed.raft.GetConfiguration()
	if err := f.Error(); err != nil || len(f.Configuration().Servers) != 1 {
		t.Fatalf("Raft configuration changed: %+v %v", f.Configuration().Servers, err)
	}
	if _, ok := rogue.State().Nodes[seed.ID()]; ok {
		t.Fatalf("%s received the cluster state", cfg.ID)
	}
	rogue.Close()
}

// TestClusterSecretJoin: a seed with a cluster secret refuses a joiner without one and one
// with another secret, and a seed without a secret refuses a joiner that has one; each
// refusal is logged on both sides with the reason and the fix, and the membership does not
// change. A joiner with the secret gets in.
func TestClusterSecretJoin(t *testing.T) {
	dir := t.TempDir()
	seed, seedLog := startLogged(t, dir, Config{ID: "n1", ClusterSecret: testSecret})
	waitReady(t, seed)

	refusedJoin(t, dir, seed, seedLog, Config{ID: "nosecret"}, "gave no cluster secret, and the accepting node requires one")
	refusedJoin(t, dir, seed, seedLog, Config{ID: "wrong", ClusterSecret: testBadSecret}, "cluster secret is not the accepting node's")

	open, openLog := startLogged(t, dir, Config{ID: "open1"})
	waitReady(t, open)
	refusedJoin(t, dir, open, openLog, Config{ID: "extra", ClusterSecret: testSecret}, "gave a cluster secret, and the accepting node has none")

	good, goodLog := startLogged(t, dir, Config{ID: "n2", ClusterSecret: testSecret, Seeds: []string{seed.PeerAddr()}})
	waitReady(t, good)
	poll(t, 10*time.Second, "two members agree", func() error {
		for _, n := range []*Node{seed, good} {
			if len(n.State().Nodes) != 2 {
				return fmt.Errorf("%s sees %v", n.ID(), n.State().NodeIDs())
			}
		}
		return nil
	})
	// A follower forwards a proposal to the leader over the authenticated peer port.
	follower := good
	if good.IsLeader() {
		follower = seed
	}
	if err := follower.Propose(context.Background(), &fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "g1", Master: "127.0.0.1:7001"}}); err != nil {
		t.Fatalf("forwarded proposal: %v", err)
	}
	for name, l := range map[string]*syncBuffer{"seed": seedLog, "n2": goodLog} {
		assertNoSecrets(t, name+" log", l.String())
	}
}

// TestRoguePeerCalls: without the cluster secret nothing on the peer port answers: a forged
// proposal to /rpc/propose, an embedder's /rpc/x/ call and a Raft stream are cut off before a
// byte of them is read, and the state does not change.
func TestRoguePeerCalls(t *testing.T) {
	dir := t.TempDir()
	called := make(chan struct{}, 1)
	cfg := Config{ID: "n1", DC: "dc1", ClusterSecret: testSecret}
	cfg.Listen, cfg.PeerListen, cfg.AdminListen = freeAddr(t), "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "n1")
	n, err := Start(cfg, Options{Logger: quietOpts().Logger, LogOutput: quietOpts().LogOutput, RPC: map[string]RPCFunc{
		"ping": func(context.Context, json.RawMessage) (any, error) { called <- struct{}{}; return "pong", nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitReady(t, n)
	// The node raises a new cluster's data format to its build's on its own: wait for that,
	// so that the index below moves only if a rogue call got through.
	poll(t, 20*time.Second, "the data format raised to the build's", func() error {
		if st := n.State(); st.Format() != fsm.LatestDataFormat || st.Nodes["n1"].ActsOn() != fsm.LatestDataFormat {
			return fmt.Errorf("format %d, n1 acts on %d", st.Format(), st.Nodes["n1"].ActsOn())
		}
		return nil
	})
	before := n.State().Index

	cmd, err := fsm.Encode(&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: "evil", Master: "10.6.6.6:6379"}})
	if err != nil {
		t.Fatal(err)
	}
	propose, _ := json.Marshal(proposeRequest{Entry: cmd})
	forged := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", rpcPropose, len(propose), propose)
	call := fmt.Sprintf("POST %sping HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", rpcExtra)
	for _, tc := range []struct {
		name  string
		proto byte
		send  string
	}{{"forged propose", muxRPC, forged}, {"extra rpc", muxRPC, call}, {"raft stream", muxRaft, "\x00garbage"}} {
		// A caller that ignores the handshake and sends its request at once.
		c, err := net.Dial("tcp", n.PeerAddr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(append([]byte{tc.proto}, tc.send...))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		c.Close()
		if bytes.Contains(got, []byte("HTTP/1.1")) || !bytes.HasPrefix(got, []byte(peerHelloMagic)) {
			t.Errorf("%s: answered %q, want only the hello and a refusal", tc.name, got)
		}
		// A caller that speaks the handshake with a wrong secret, or none.
		for _, secret := range []string{"", testBadSecret} {
			d := peerDialer{auth: newPeerAuth(secret, quietOpts().Logger)}
			c, err := d.dial(n.PeerAddr(), tc.proto, 5*time.Second)
			var pe *PeerRefusedError
			if err == nil || !errors.As(err, &pe) || !pe.Remote {
				if c != nil {
					c.Close()
				}
				t.Errorf("%s with secret %q: dial %v, want a refusal", tc.name, secret, err)
			}
		}
	}
	wrong := newPeerClient(peerDialer{auth: newPeerAuth(testBadSecret, quietOpts().Logger)})
	if err := wrong.call(context.Background(), n.PeerAddr(), rpcPropose, json.RawMessage(propose), nil); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("propose with a wrong secret: %v", err)
	}
	select {
	case <-called:
		t.Error("the embedder's RPC ran for a caller without the secret")
	default:
	}
	if st := n.State(); st.Index != before || st.DCs["dc1"] != nil && st.DCs["dc1"].Groups["evil"] != nil {
		t.Fatalf("state changed: index %d -> %d", before, st.Index)
	}
	// With the secret, the same calls work: what stopped them was the missing proof.
	right := newPeerClient(peerDialer{auth: newPeerAuth(testSecret, quietOpts().Logger)})
	var pong string
	if err := right.call(context.Background(), n.PeerAddr(), rpcExtra+"ping", struct{}{}, &pong); err != nil || pong != "pong" {
		t.Fatalf("extra rpc with the secret: %q %v", pong, err)
	}
	if err := right.call(context.Background(), n.PeerAddr(), rpcPropose, json.RawMessage(propose), nil); err != nil || n.State().DCs["dc1"].Groups["evil"] == nil {
		t.Fatalf("propose with the secret: %v", err)
	}
}

// TestSecretsNeverShown configures distinctive secrets (client password, backend passwords
// through the admin API, admin token, cluster secret) on two nodes and checks that none
// appears in any admin answer (every GET endpoint, /metrics, error answers), in the logs or
// in a printed config; the group password goes in and stays in.
func TestSecretsNeverShown(t *testing.T) {
	dir := t.TempDir()
	base := Config{Password: testClientPW, AdminToken: testToken, ClusterSecret: testSecret,
		Groups: []GroupConfig{{ID: "g0", Master: "127.0.0.1:7000", Password: testGroupPW}}}
	c1, c2 := base, base
	c1.ID, c2.ID = "n1", "n2"
	n1, log1 := startLogged(t, dir, c1)
	waitReady(t, n1)
	c2.Seeds = []string{n1.PeerAddr()}
	n2, log2 := startLogged(t, dir, c2)
	waitReady(t, n2)
	adm := "http://" + n2.AdminAddr()
	auth := "Bearer " + testToken
	var answers []string
	do := func(method, path, body string, want int) {
		t.Helper()
		code, got := adminCall(t, adm, method, path, auth, body)
		if code != want {
			t.Errorf("%s %s: %d %s, want %d", method, path, code, got, want)
		}
		answers = append(answers, method+" "+path+": "+got)
	}
	do("POST", "/groups", `{"dc":"dc1","group":{"id":"g1","master":"127.0.0.1:7001","password":"`+testGroupPW+`"}}`, 200)
	// Bad requests that carry a password: the error must not repeat it.
	do("POST", "/groups", `{"dc":"dc1","group":{"id":"g2","master":"nonsense","password":"`+testGroupPW+`"}}`, 400)
	do("POST", "/groups", `{"dc":"dc1","group":{"id":"g1","master":"127.0.0.1:7001","password":"`+testGroupPW+`"}}`, 409)
	do("POST", "/groups", `{"dc":"dc1","group":{"id":"g3","master":"127.0.0.1:7003","password":["`+testGroupPW+`"]}}`, 400)
	do("PUT", "/groups/dc1/g1", `{"master":"127.0.0.1:7001","passwd":"`+testGroupPW+`"}`, 400)
	// An update without a password keeps it; one with a password changes it. The stored
	// password goes only to the group's current servers: a new one needs the password given.
	do("PUT", "/groups/dc1/g1", `{"master":"127.0.0.1:7011"}`, 400)
	do("PUT", "/groups/dc1/g1", `{"master":"127.0.0.1:7001","priority":{"127.0.0.1:7001":5}}`, 200)
	if g := n1.State().DCs["dc1"].Groups["g1"]; g.Password != testGroupPW || g.Priority["127.0.0.1:7001"] != 5 {
		t.Fatalf("update without a password: %s", g)
	}
	do("PUT", "/groups/dc1/g1", `{"master":"127.0.0.1:7011","password":"`+testGroupPW2+`"}`, 200)
	poll(t, 5*time.Second, "the new password applied on n1", func() error {
		if g := n1.State().DCs["dc1"].Groups["g1"]; g.Password != testGroupPW2 {
			return fmt.Errorf("g1 is %s", g)
		}
		return nil
	})
	for _, rt := range adminRoutes(t) {
		if rt[0] == "GET" && !strings.Contains(rt[1], "/1") {
			do("GET", rt[1], "", 200)
		}
	}
	do("GET", "/migrations/1", "", 404)
	var st Status
	_, body := adminCall(t, adm, "GET", "/status", auth, "")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.DCs) != 1 || len(st.DCs[0].Groups) != 1 || st.DCs[0].Groups[0].Password != "set" {
		t.Fatalf("status groups: %+v, want g1 with password \"set\"", st.DCs)
	}
	for _, a := range answers {
		assertNoSecrets(t, "answer", a)
	}
	// A config printed or logged by accident shows its secrets as "set".
	var printed bytes.Buffer
	slog.New(slog.NewTextHandler(&printed, nil)).Info("config", "cfg", c1, "group", c1.Groups[0])
	fmt.Fprintf(&printed, "%v %+v %#v %s %v", c1, c1, c1, c1, fsm.Group{Password: testGroupPW})
	fmt.Fprintf(&printed, "%v", fmt.Errorf("bad config %v", &c1))
	assertNoSecrets(t, "printed config", printed.String())
	if !strings.Contains(printed.String(), "Password:set") {
		t.Errorf("a printed config does not say the password is set: %s", printed.String())
	}
	assertNoSecrets(t, "n1 log", log1.String())
	assertNoSecrets(t, "n2 log", log2.String())
}

func assertNoSecrets(t *testing.T, what, s string) {
	t.Helper()
	for _, sec := range testSecrets {
		if strings.Contains(s, sec) {
			i := strings.Index(s, sec)
			t.Errorf("%s shows the secret %s: ...%s...", what, sec, s[max(0, i-200):min(len(s), i+len(sec)+50)])
		}
	}
}

// TestSecretConfig: the secrets' files are read at start, and bad combinations are refused
// with the key named and the value never shown.
func TestSecretConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Config{AdminTokenFile: file, ClusterSecretFile: file}
	if err := c.loadSecretFiles(); err != nil || c.AdminToken != testToken || c.ClusterSecret != testToken {
		t.Fatalf("from files: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{AdminToken: "short"}, "admin_token: is shorter than 16"},
		{Config{ClusterSecret: "short"}, "cluster_secret: is shorter than 16"},
		{Config{AdminToken: testToken, AdminTokenFile: file}, "admin_token_file: is set and so is admin_token"},
		{Config{ClusterSecret: testSecret, ClusterSecretFile: file}, "cluster_secret_file: is set and so is cluster_secret"},
		{Config{AdminTLSCertFile: file}, "admin_tls_key_file: is required"},
		{Config{AdminTLSKeyFile: file}, "admin_tls_cert_file: is required"},
	} {
		c := tc.cfg
		c.ID, c.DataDir = "n1", dir
		c.ApplyDefaults()
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", c, err, tc.want)
		}
		if err != nil {
			assertNoSecrets(t, "error", err.Error())
		}
	}
	c = Config{AdminTokenFile: short}
	if err := c.loadSecretFiles(); err == nil || !strings.Contains(err.Error(), "fewer than 16") {
		t.Errorf("short file: %v", err)
	}
	c = Config{ClusterSecretFile: filepath.Join(dir, "missing")}
	if err := c.loadSecretFiles(); err == nil || !strings.Contains(err.Error(), "cluster_secret_file") {
		t.Errorf("missing file: %v", err)
	}
	path := writeConf(t, "id: n1\ncluster_secret: "+testSecret+"\nadmin_token_file: "+file+"\nadmin_open_metrics: false\n")
	got, _, err := LoadConfig(path)
	if err != nil || got.ClusterSecret != testSecret || got.AdminTokenFile != file || got.AdminOpenMetrics == nil || *got.AdminOpenMetrics {
		t.Fatalf("load: %+v %v", got, err)
	}
}

// TestPeerHandshakeMutual: a node with the secret does not trust an accepting side that lets
// it in without proving it holds the secret too (a rogue seed posing as the cluster).
func TestPeerHandshakeMutual(t *testing.T) {
	for _, tc := range []struct {
		flags byte
		want  string
	}{{0, peerWhyServerNone}, {1, peerWhyServerWrong}} {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			hello := append([]byte(peerHelloMagic), tc.flags)
			_, _ = server.Write(append(hello, make([]byte, peerNonceLen)...))
			_, _ = io.ReadFull(server, make([]byte, 1+peerNonceLen+peerMACLen))
			_, _ = server.Write(make([]byte, 3+peerMACLen)) // "ok", and a proof of nothing
		}()
		err := newPeerAuth(testSecret, quietOpts().Logger).connect(client, "rogue:1", muxRPC)
		client.Close()
		var pe *PeerRefusedError
		if !errors.As(err, &pe) || pe.Remote || pe.Reason != tc.want {
			t.Errorf("server flags %d: %v, want %q", tc.flags, err, tc.want)
		}
	}
}
