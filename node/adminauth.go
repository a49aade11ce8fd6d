package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
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
