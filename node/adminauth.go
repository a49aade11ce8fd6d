package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// adminTokenHelp says how to pass the admin token; 401 answers carry it.
const adminTokenHelp = `send the header "Authorization: Bearer <admin_token>" (redraft's CLI: --admin-token or REDRAFT_ADMIN_TOKEN)`

// adminTLS returns the admin port's TLS configuration (nil: plain HTTP).
func adminTLS(cfg *Config) (*tls.Config, error) {
	if cfg.AdminTLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.AdminTLSCertFile, cfg.AdminTLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin_tls_cert_file/admin_tls_key_file: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// adminOpen reports whether path is served without the token: /healthz and the dashboard's
// static files (/ and /ui/..., which hold no cluster data: the page asks for the token and
// sends it with every API call) always, /metrics unless admin_open_metrics is false.
func (n *Node) adminOpen(path string) bool {
	if strings.HasPrefix(path, "/ui/") {
		return true
	}
	switch path {
	case "/", "/healthz":
		return true
	case "/metrics":
		return n.cfg.AdminOpenMetrics == nil || *n.cfg.AdminOpenMetrics
	}
	return false
}

// requireToken guards h: with an admin token configured, every request but the open paths
// must carry it as a bearer token, compared in constant time; others get 401 with a JSON
// error saying how to pass it.
func (n *Node) requireToken(h http.Handler) http.Handler {
	if n.cfg.AdminToken == "" {
		return h
	}
	want := sha256.Sum256([]byte(n.cfg.AdminToken))
	var limit logLimiter
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.adminOpen(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			adminRefuse(w, "this admin API needs the admin token: "+adminTokenHelp)
			return
		}
		// Hashing first makes the comparison's time independent of the lengths too.
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			if limit.allow(hostOf(r.RemoteAddr)) {
				n.log.Warn("admin request with a wrong token refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
			}
			adminRefuse(w, "the admin token is wrong: "+adminTokenHelp)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// adminGuard is the one wrapper every admin request passes, before any handler runs or any
// body is read: the browser checks (crossSite), then the token (requireToken).
func (n *Node) adminGuard(h http.Handler) http.Handler {
	return n.crossSite(n.requireToken(h))
}

// Help texts of the cross-site refusals (docs/security.md, "Admin API").
const (
	adminJSONHelp   = `send the header "Content-Type: application/json" with every POST, PUT and DELETE, with or without a body (redraft's CLI and dashboard do): a web page of another site can send only text/plain, form or multipart bodies without the browser asking this API first (docs/security.md, "Admin API")`
	adminHostHelp   = `this node has no admin token, so its admin API answers only requests addressed to an IP address, localhost or the node's own admin address (a host name it does not know could be DNS rebinding: a web page in your browser reaching this port): call it as http://127.0.0.1:PORT or http://IP:PORT, or set admin_token, which makes any host name fine (docs/security.md, "Admin API")`
	adminOriginHelp = `a web page of another site may not call this admin API: the dashboard is served by the node itself, and the CLI and scripts send no Origin header (behind a reverse proxy, pass the original Host header on: docs/security.md, "Admin API")`
)

// crossSite refuses what a web page in an operator's browser can make of the admin API: a
// "simple" cross-site POST (text/plain, no CORS preflight) whose body readJSON would decode,
// a request with another site's Origin, and, without an admin token, DNS rebinding (a name
// of the attacker's resolving to this port: the browser then sends that name as Host and
// takes the page and the API for one site). So:
//
//   - a method other than GET, HEAD and OPTIONS needs Content-Type application/json (415);
//   - an Origin header must name the host and port the request was sent to (403);
//   - without an admin token, Host must be an IP address, localhost (any port), empty, or the
//     host of this node's own admin address (admin_listen, advertise): 403 otherwise. The
//     open paths (/healthz, /metrics, the dashboard's files) stay open to any Host for GET and
//     HEAD, for monitoring that names the node, and hold nothing a rebinding page may not see.
//
// With a token, any Host is fine: a page cannot send the token, which lives in the tab of the
// node's own dashboard only.
func (n *Node) crossSite(h http.Handler) http.Handler {
	names := map[string]bool{}
	for _, a := range []string{n.adminAddr, n.cfg.AdminListen} {
		if host, _, err := net.SplitHostPort(a); err == nil && host != "" {
			names[strings.ToLower(host)] = true
		}
	}
	if n.cfg.Advertise != "" {
		names[strings.ToLower(n.cfg.Advertise)] = true
	}
	var limit logLimiter
	refuse := func(w http.ResponseWriter, r *http.Request, status int, code, why, msg string) {
		if limit.allow(code + " " + hostOf(r.RemoteAddr)) {
			n.log.Warn("admin request refused: "+why, "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path,
				"host", clip(r.Host), "origin", clip(r.Header.Get("Origin")))
		}
		writeJSON(w, status, rpcError{Error: msg, Code: code})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r) {
			refuse(w, r, http.StatusForbidden, "cross_origin", "another site's Origin",
				fmt.Sprintf("refused: the request comes from a page of %q, not from this admin API's own address %q: %s",
					clip(origin), clip(r.Host), adminOriginHelp))
			return
		}
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if fromOtherSite(r) && !(read && n.adminOpen(r.URL.Path) && r.Header.Get("Sec-Fetch-Mode") == "navigate") {
			refuse(w, r, http.StatusForbidden, "cross_site", "a request another site's page made",
				"refused: a web page of another site made this request (Sec-Fetch-Site): "+adminOriginHelp)
			return
		}
		if n.cfg.AdminToken == "" && !(read && n.adminOpen(r.URL.Path)) && !localHost(r.Host, names) {
			refuse(w, r, http.StatusForbidden, "host_not_allowed", "a host name without an admin token (DNS rebinding?)",
				fmt.Sprintf("refused: Host %q: %s", clip(r.Host), adminHostHelp))
			return
		}
		if !read && r.Method != http.MethodOptions {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				refuse(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "not application/json",
					"refused: this admin API takes JSON only: "+adminJSONHelp)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// fromOtherSite reports whether a browser says another site's page made r (Sec-Fetch-Site
// cross-site or same-site: a page on another port of the same host is same-site). A GET sends
// no Origin, so an image tag of any page could start a long CPU profile or trace, or a
// goroutine dump that stops the node, on a node without an admin token; browsers send this
// header on every request, the CLI and scripts do not.
func fromOtherSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	return false
}

// localHost reports whether a request's Host may be served without an admin token: empty
// (HTTP/1.0), an IP address, localhost, or one of the node's own names.
func localHost(host string, names map[string]bool) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if host == "" || host == "localhost" || names[host] {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// sameOrigin reports whether origin (scheme://host[:port], as browsers send it) names the
// host and port r was sent to: the scheme only supplies a port neither names (a TLS
// terminating proxy may stand between them).
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.Path != "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" (a sandboxed or file: page) included
	}
	return hostPort(u.Host, u.Scheme) == hostPort(r.Host, u.Scheme)
}

// hostPort is host:port in lower case, with the scheme's default port when none is given.
func hostPort(hp, scheme string) string {
	hp = strings.ToLower(hp)
	if _, _, err := net.SplitHostPort(hp); err == nil {
		return hp
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(hp, "["), "]"), port)
}

// clip shortens a header value quoted in an answer or a log line.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

func adminRefuse(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="redraft admin"`)
	writeJSON(w, http.StatusUnauthorized, rpcError{Error: msg, Code: "unauthorized"})
}

// warnOpenDoors logs, at start, each door this node leaves open: an admin API without a
// token, a peer port without TLS or a cluster secret.
func (n *Node) warnOpenDoors() {
	if n.cfg.AdminToken == "" {
		n.log.Warn("the admin API is open: anyone who reaches admin_listen can read the cluster and change it; set admin_token or admin_token_file (docs/security.md)",
			"admin", n.adminAddr)
	} else if n.cfg.AdminTLSCertFile == "" && !loopbackListen(n.cfg.AdminListen) {
		n.log.Warn("the admin token crosses the network in clear: set admin_tls_cert_file and admin_tls_key_file, or listen on loopback only (docs/security.md)",
			"admin", n.adminAddr)
	}
	if n.cfg.ClusterSecret == "" && n.cfg.TLSCertFile == "" {
		n.log.Warn("the peer port is open: any process that reaches peer_listen can join this cluster and call its nodes; set cluster_secret (the same on every node) or peer TLS (docs/security.md)",
			"peer", n.peerAddr)
	}
}

// loopbackListen reports whether a listen address takes connections from this host only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
