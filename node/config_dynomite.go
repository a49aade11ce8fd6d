package node

import (
	"cmp"
	"fmt"
	"net"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// A Dynomite node file has one top-level key naming the pool (dyn_o_mite: in Netflix's
// examples) whose value holds the node's settings. docs/configuration.md has the mapping table.

// confDynomiteAmong returns the key of a Dynomite-looking pool in a file with several top-level
// keys, or nil.
func confDynomiteAmong(root *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if confDynomiteLooks(confResolve(root.Content[i+1])) {
			return root.Content[i]
		}
	}
	return nil
}

// confDynomiteLooks reports whether a mapping holds Dynomite pool settings.
func confDynomiteLooks(m *yaml.Node) bool {
	if m.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i].Value; k == "dyn_listen" || k == "servers" {
			return true
		}
	}
	return false
}

// confDynomitePool returns the pool key and body of a Dynomite file.
func confDynomitePool(root *yaml.Node) (*yaml.Node, *yaml.Node, bool) {
	if len(root.Content) != 2 {
		return nil, nil, false
	}
	k, v := root.Content[0], confResolve(root.Content[1])
	for _, fld := range confFields {
		if fld.name == k.Value {
			return nil, nil, false
		}
	}
	if v.Kind == yaml.MappingNode && (k.Value == "dyn_o_mite" || confDynomiteLooks(v)) {
		return k, v, true
	}
	return nil, nil, false
}

// confDyno is the state of one Dynomite mapping.
type confDyno struct {
	pool       string
	loopback   string // first loopback server address, warned about once
	loopLine   int
	serversAt  int
	secure     string // secure_server_option, and where it was given
	secureLine int
	pem        string // pem_key_file, and where it was given
	pemLine    int
}

// confDynoKey maps one Dynomite key onto a redraft key.
type confDynoKey struct {
	target string
	set    func(f *confFile, c *Config, d *confDyno, n *yaml.Node) error
}

func confDynoNative(name string) func(f *confFile, c *Config, d *confDyno, n *yaml.Node) error {
	for _, fld := range confFields {
		if fld.name == name {
			return func(f *confFile, c *Config, _ *confDyno, n *yaml.Node) error { return fld.set(f, c, name, n) }
		}
	}
	panic("node: no config key " + name)
}

// confDynoMapped are the Dynomite keys that have a redraft meaning.
var confDynoMapped = map[string]confDynoKey{
	"listen":            {"listen", confDynoNative("listen")},
	"dyn_listen":        {"peer_listen", confDynoNative("peer_listen")},
	"stats_listen":      {"admin_listen", confDynoNative("admin_listen")},
	"datacenter":        {"datacenter", confDynoNative("datacenter")},
	"rack":              {"rack", confDynoNative("rack")},
	"tokens":            {"tokens", confDynoNative("tokens")},
	"read_consistency":  {"read_consistency", confDynoNative("read_consistency")},
	"write_consistency": {"write_consistency", confDynoNative("write_consistency")},
	"timeout":           {"backend_timeout", confDynoNative("backend_timeout")},
	"dyn_seeds": {"seeds", func(_ *confFile, c *Config, _ *confDyno, n *yaml.Node) error {
		seeds, err := confStrList(n)
		if err != nil {
			return err
		}
		c.Seeds = nil
		for _, s := range seeds {
			// host:port:rack:dc:token; redraft needs only host:port (the peer port).
			parts := strings.Split(s, ":")
			if len(parts) != 2 && len(parts) < 5 {
				return fmt.Errorf("%q is not host:port:rack:dc:token", s)
			}
			c.Seeds = append(c.Seeds, parts[0]+":"+parts[1])
		}
		return nil
	}},
	"servers": {"groups", func(f *confFile, c *Config, d *confDyno, n *yaml.Node) error {
		servers, err := confStrList(n)
		if err != nil {
			return err
		}
		items := n.Content
		c.Groups = nil
		for i, s := range servers {
			addr, err := confDynoServer(s)
			if err != nil {
				return err
			}
			line := n.Line
			if i < len(items) {
				line = items[i].Line
			}
			key := fmt.Sprintf("groups[%d]", len(c.Groups))
			f.lines[key], f.names[key] = line, fmt.Sprintf("servers[%d]", i)
			host, port, _ := net.SplitHostPort(addr)
			id := confSanitizeID("g-" + host + "-" + port)
			c.Groups = append(c.Groups, GroupConfig{ID: id, Master: addr})
			if ip := net.ParseIP(host); (host == "localhost" || ip != nil && ip.IsLoopback()) && d.loopback == "" {
				d.loopback, d.loopLine = addr, line
			}
		}
		return nil
	}},
	"data_store": {"data_store", func(_ *confFile, _ *Config, _ *confDyno, n *yaml.Node) error {
		v, err := confInt(n, 32)
		switch {
		case err != nil:
			return err
		case v == 1:
			return fmt.Errorf("1 is memcached: redraft proxies only Redis backends (data_store: 0)")
		case v != 0:
			return fmt.Errorf("%d is not a data store: redraft proxies only Redis backends (data_store: 0)", v)
		}
		return nil
	}},
	"secure_server_option": {"secure_server_option", func(_ *confFile, _ *Config, d *confDyno, n *yaml.Node) error {
		v, err := confScalar(n, "none, rack, datacenter or all")
		if err != nil {
			return err
		}
		switch v {
		case "none", "rack", "datacenter", "all":
			d.secure, d.secureLine = v, n.Line
		default:
			return fmt.Errorf("%q is not none, rack, datacenter or all", v)
		}
		return nil
	}},
	// Dynomite's pem file holds the key and the certificate every node shares; whether it is
	// used depends on secure_server_option (decodeDynomite's dynoTLS).
	"pem_key_file": {"tls_cert_file", func(_ *confFile, _ *Config, d *confDyno, n *yaml.Node) error {
		v, err := confScalar(n, "a file name")
		if err != nil {
			return err
		}
		d.pem, d.pemLine = v, n.Line
		return nil
	}},
}

// dynoTLS maps secure_server_option and pem_key_file onto TLS on the peer port: Dynomite
// encrypts the traffic the option names with the pem file's key and certificate; redraft
// encrypts all peer traffic or none.
func (f *confFile) dynoTLS(c *Config, d *confDyno) {
	switch {
	case d.secure == "" || d.secure == "none":
		if d.pem != "" {
			f.warn(d.pemLine, "pem_key_file", "is not used: secure_server_option is %q, so peer traffic is plaintext (Dynomite's rule too)", cmp.Or(d.secure, "none"))
		}
	case d.pem == "":
		// The file asks for encryption: refused unless the flags or the environment configure
		// TLS (checked once they are applied), rather than run plaintext, the peer port then
		// open to whoever reaches it when no cluster_secret is set either (Dynomite files
		// carry none).
		f.wantsTLS, f.wantsTLSLine = d.secure, d.secureLine
	default:
		c.TLSCertFile, c.TLSKeyFile = d.pem, d.pem
		if d.secure != "all" {
			f.warn(d.secureLine, "secure_server_option", "is %q: redraft encrypts all peer traffic (Raft, RPC, replication), within the %s too", d.secure, d.secure)
		}
	}
}

// confDynoIgnored are the Dynomite keys with no meaning in redraft, and why.
var confDynoIgnored = map[string]string{
	"hash":                    "keys are placed by CRC16 slot, as in Redis Cluster, not by a configurable hash",
	"hash_tag":                "redraft always uses Redis Cluster's {...} hash tags",
	"distribution":            "keys are placed by the slot table (Dynomite deprecated this key too)",
	"backlog":                 "the listen backlog is the operating system's default",
	"client_connections":      "redraft does not cap client connections",
	"preconnect":              "backend connections are opened on first use and kept open",
	"auto_eject_hosts":        "groups are never ejected: replace a failed master with redraft group update",
	"server_retry_timeout":    "groups are never ejected: replace a failed master with redraft group update",
	"server_failure_limit":    "groups are never ejected: replace a failed master with redraft group update",
	"server_connections":      "each backend gets one pipelined connection set (Dynomite deprecated this key too)",
	"datastore_connections":   "each backend gets one pipelined connection set",
	"dyn_read_timeout":        "peer RPC timeouts are built in",
	"dyn_write_timeout":       "peer RPC timeouts are built in",
	"dyn_seed_provider":       "seeds come from this file (dyn_seeds) and membership is kept in Raft",
	"dyn_port":                "the peer port is dyn_listen's port (Dynomite deprecated this key too)",
	"dyn_connections":         "nodes talk over one multiplexed peer connection",
	"local_peer_connections":  "nodes talk over one multiplexed peer connection",
	"remote_peer_connections": "nodes talk over one multiplexed peer connection",
	"gos_interval":            "there is no gossip: membership and the token ring are kept in Raft",
	"enable_gossip":           "there is no gossip: membership and the token ring are kept in Raft",
	"recon_key_file":          "Dynomite's reconciliation encryption has no counterpart",
	"recon_iv_file":           "Dynomite's reconciliation encryption has no counterpart",
	"env":                     "it selects the cloud environment of Dynomite's seed providers; seeds come from this file",
	"conn_msg_rate":           "redraft does not rate-limit connections",
	"stats_interval":          "metrics are computed when /metrics is scraped",
	"mbuf_size":               "Go manages buffers; request sizes are bounded by max_bulk_bytes and max_multibulk",
	"max_msgs":                "Go manages buffers; request sizes are bounded by max_bulk_bytes and max_multibulk",
	"read_repairs_enabled":    "cross-DC replication is an ordered log per slot, so there is nothing to repair on read",
}

// decodeDynomite maps a Dynomite pool onto c. Redraft's own keys are accepted in the pool too
// (id:, data_dir:, ...), so an operator can name the node; a key given both ways is an error.
func (f *confFile) decodeDynomite(c *Config, poolKey, m *yaml.Node) {
	d := &confDyno{pool: poolKey.Value}
	c.DC, c.Rack = "localdc", "localrack" // Dynomite's defaults
	seen := map[string]int{}
	setBy := map[string]string{} // redraft key → the key that set it
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], confResolve(m.Content[i+1])
		name := kn.Value
		if !f.plainNewKey(kn, name, seen) {
			continue
		}
		if reason, ok := confDynoIgnored[name]; ok {
			f.warn(kn.Line, name, "has no meaning in redraft and is ignored: %s", reason)
			continue
		}
		dk, ok := confDynoMapped[name]
		if !ok {
			for _, fld := range confFields {
				if fld.name == name {
					dk, ok = confDynoKey{target: name, set: confDynoNative(name)}, true
				}
			}
		}
		if !ok {
			f.errorAt(kn.Line, "unknown key %q in Dynomite pool %q%s", name, d.pool, confSuggest(name, confDynoKnown()))
			continue
		}
		if other, dup := setBy[dk.target]; dup {
			f.errorAt(kn.Line, "%s: %s already sets %s: keep one of them", name, other, dk.target)
			continue
		}
		setBy[dk.target] = name
		f.lines[dk.target] = kn.Line
		if dk.target != name {
			f.names[dk.target] = name
		}
		if confIsNull(vn) {
			continue
		}
		if err := dk.set(f, c, d, vn); err != nil {
			f.fail(vn.Line, dk.target, "%v", err)
		}
	}
	f.dynoTLS(c, d)
	if d.loopback != "" {
		f.warn(d.loopLine, "servers", "has the loopback address %s: every redraft node of the datacenter connects to every group, so other hosts cannot reach it; give an address they can reach (fine when all nodes run on one host)", d.loopback)
	}
	if c.ID == "" {
		how := "datacenter-rack-first token"
		id := fmt.Sprintf("%s-%s-", c.DC, c.Rack)
		if len(c.Tokens) > 0 {
			id += fmt.Sprint(c.Tokens[0])
		} else {
			_, port, _ := net.SplitHostPort(c.PeerListen)
			id += port
			how = "datacenter-rack-dyn_listen port"
		}
		c.ID = confSanitizeID(id)
		f.warn(poolKey.Line, "id", "is not set (Dynomite files have none): using %q (%s); add id: NAME under %s: to choose one", c.ID, how, d.pool)
	}
}

// confDynoKnown lists every key a Dynomite pool may hold, for suggestions.
func confDynoKnown() []string {
	var out []string
	for k := range confDynoMapped {
		out = append(out, k)
	}
	for k := range confDynoIgnored {
		out = append(out, k)
	}
	for _, fld := range confFields {
		if _, ok := confDynoMapped[fld.name]; !ok {
			out = append(out, fld.name)
		}
	}
	sort.Strings(out)
	return out
}

// confDynoServer parses a Dynomite server, "host:port:weight [name]", into host:port.
func confDynoServer(s string) (string, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return "", fmt.Errorf("empty server entry")
	}
	v := fields[0]
	if strings.HasPrefix(v, "/") {
		return "", fmt.Errorf("%q is a unix socket: redraft reaches backends by host:port, which every node of the datacenter must reach", s)
	}
	if i := strings.LastIndex(v, ":"); i > 0 {
		if h, p, err := net.SplitHostPort(v[:i]); err == nil && h != "" && p != "" && confAllDigits(v[i+1:]) {
			return v[:i], nil // weight dropped: Dynomite ignores it too
		}
	}
	if h, _, err := net.SplitHostPort(v); err == nil && h != "" {
		return v, nil
	}
	return "", fmt.Errorf("%q is not host:port:weight", s)
}

func confAllDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// confSanitizeID turns s into a valid id: other characters become '_', at most 64 bytes.
func confSanitizeID(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
