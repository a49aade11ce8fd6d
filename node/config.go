package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/redraft/redraft/fsm"
)

// Config is one node's configuration, read from one YAML file (see docs/configuration.md).
// A Dynomite node file is accepted too and mapped onto it.
type Config struct {
	// ID names the node in the cluster: letters, digits, '-', '_' and '.', up to 64 bytes.
	ID string `yaml:"id"`
	// DC is the node's datacenter (default "dc1").
	DC string `yaml:"datacenter"`
	// Rack is the node's rack (optional; kept for operators and Dynomite files).
	Rack string `yaml:"rack"`
	// Tokens are the node's positions on its DC's token ring; empty: spread evenly.
	Tokens []uint32 `yaml:"tokens"`
	// Listen is the RESP address for clients (default 127.0.0.1:6380); "none" serves clients
	// over TLS only (TLSListen).
	Listen string `yaml:"listen"`
	// TLSListen, when set, is a second RESP address for clients, speaking TLS with the
	// client_tls_* files (config_clients.go).
	TLSListen string `yaml:"tls_listen"`
	// ClientTLSCertFile and ClientTLSKeyFile are the PEM certificate and key TLSListen presents.
	ClientTLSCertFile string `yaml:"client_tls_cert_file"`
	ClientTLSKeyFile  string `yaml:"client_tls_key_file"`
	// ClientTLSCAFile holds the CA certificates client certificates must chain to.
	ClientTLSCAFile string `yaml:"client_tls_ca_file"`
	// ClientTLSAuth is none (default), optional or required: whether TLS clients must present a
	// certificate from ClientTLSCAFile.
	ClientTLSAuth string `yaml:"client_tls_auth"`
	// PeerListen carries Raft and the nodes' own RPC (default 127.0.0.1:7380).
	PeerListen string `yaml:"peer_listen"`
	// AdminListen serves the HTTP admin API, metrics and dashboard (default 127.0.0.1:8380).
	AdminListen string `yaml:"admin_listen"`
	// Advertise is the host (no port) other nodes and clients use to reach this node when it
	// listens on all interfaces (optional).
	Advertise string `yaml:"advertise"`
	// DataDir holds the Raft log and snapshots (default "data/<id>").
	DataDir string `yaml:"data_dir"`
	// Seeds are peer or admin addresses of existing members to join through.
	Seeds []string `yaml:"seeds"`
	// MaxVoters is the number of Raft voters at most (default 5, 1 to 9).
	MaxVoters int `yaml:"max_voters"`
	// Password is the AUTH password clients must give (empty: no AUTH): the default user's.
	Password string `yaml:"password"`
	// Users are client users besides the default one (AUTH user pass).
	Users []UserConfig `yaml:"users"`
	// Groups are groups of this node's DC to register at start (idempotent).
	Groups []GroupConfig `yaml:"groups"`
	// ReadConsistency is this node's default read level (empty: the cluster setting).
	ReadConsistency string `yaml:"read_consistency"`
	// WriteConsistency is this node's default write level (empty: the cluster setting).
	WriteConsistency string `yaml:"write_consistency"`
	// BackendTimeout bounds one request to a backend Redis (default 3s).
	BackendTimeout Duration `yaml:"backend_timeout"`
	// MaxBulkBytes is the largest bulk string a client may send (default 512 MiB).
	MaxBulkBytes int64 `yaml:"max_bulk_bytes"`
	// MaxMultibulk is the most elements a client request may have (default 1048576).
	MaxMultibulk int `yaml:"max_multibulk"`
	// FlushEnabled overrides the cluster's flush_enabled setting on this node when set.
	FlushEnabled *bool `yaml:"flush_enabled"`
	// TLSCertFile and TLSKeyFile are the PEM files for TLS on the peer port.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// TLSCAFile holds the cluster CA's certificates peers must chain to (default: those in
	// TLSCertFile, for one certificate shared by every node).
	TLSCAFile string `yaml:"tls_ca_file"`
	// ClusterSecret is the secret every node proves it knows, without sending it, on each peer
	// connection (Raft and RPC, join included); empty: peers are not asked for one (docs/security.md).
	ClusterSecret string `yaml:"cluster_secret"`
	// ClusterSecretFile names a file holding ClusterSecret, read at start.
	ClusterSecretFile string `yaml:"cluster_secret_file"`
	// AdminToken is the bearer token the admin API asks for on everything but /healthz and
	// /metrics; empty: the admin API is open (a warning says so at start).
	AdminToken string `yaml:"admin_token"`
	// AdminTokenFile names a file holding AdminToken, read at start.
	AdminTokenFile string `yaml:"admin_token_file"`
	// AdminOpenMetrics leaves /metrics readable without the token (default true).
	AdminOpenMetrics *bool `yaml:"admin_open_metrics"`
	// AdminTLSCertFile and AdminTLSKeyFile are the PEM files for HTTPS on the admin port.
	AdminTLSCertFile string `yaml:"admin_tls_cert_file"`
	AdminTLSKeyFile  string `yaml:"admin_tls_key_file"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// Procs is how many threads run the node's Go code at once (GOMAXPROCS); 0: half the CPUs
	// the process may use, at least one (see Procs).
	Procs int `yaml:"procs"`
}

// ProcsFor returns the GOMAXPROCS a node should run with: the configured procs, or for 0 half
// of cpus (at least one). A node usually shares its host with the Redis servers it fronts,
// which need cores of their own, and the data plane's work per request is mostly kernel socket
// work: measured on two cores, one thread spent a third less CPU per request than two and
// served more requests (docs/performance.md).
func ProcsFor(procs, cpus int) int {
	if procs > 0 {
		return procs
	}
	return max(1, cpus/2)
}

// GroupConfig is one group (a Redis master and its replicas) named in a node's file.
type GroupConfig struct {
	ID       string   `yaml:"id"`
	Master   string   `yaml:"master"`
	Replicas []string `yaml:"replicas"`
	// User and Password are the backends' admin credentials (empty User: Redis's default
	// user), with which redraft creates its ACL users (docs/security.md, "Backends").
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Duration is a time.Duration written in YAML as "250ms", "3s", "1m30s", or a whole number of
// milliseconds (Dynomite's style).
type Duration time.Duration

// The defaults; docs/configuration.md lists them too.
const (
	confDefaultDC           = "dc1"
	confDefaultListen       = "127.0.0.1:6380"
	confDefaultPeerListen   = "127.0.0.1:7380"
	confDefaultAdminListen  = "127.0.0.1:8380"
	confDefaultMaxVoters    = 5
	confDefaultTimeout      = Duration(3 * time.Second)
	confDefaultMaxBulkBytes = 512 << 20
	confDefaultMaxMultibulk = 1 << 20
	confDefaultLogLevel     = "info"
)

// DefaultConfig returns a configuration with every default filled in; ID is empty and DataDir
// follows the ID (ApplyDefaults sets it once ID is known).
func DefaultConfig() Config {
	return Config{
		DC:             confDefaultDC,
		Listen:         confDefaultListen,
		PeerListen:     confDefaultPeerListen,
		AdminListen:    confDefaultAdminListen,
		MaxVoters:      confDefaultMaxVoters,
		BackendTimeout: confDefaultTimeout,
		MaxBulkBytes:   confDefaultMaxBulkBytes,
		MaxMultibulk:   confDefaultMaxMultibulk,
		LogLevel:       confDefaultLogLevel,
	}
}

// ApplyDefaults fills every unset (zero) field with its default; DataDir becomes "data/<id>"
// when ID is set.
func (c *Config) ApplyDefaults() {
	d := DefaultConfig()
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setStr(&c.DC, d.DC)
	setStr(&c.Listen, d.Listen)
	setStr(&c.PeerListen, d.PeerListen)
	setStr(&c.AdminListen, d.AdminListen)
	setStr(&c.LogLevel, d.LogLevel)
	if c.DataDir == "" && c.ID != "" {
		c.DataDir = "data/" + c.ID
	}
	if c.MaxVoters == 0 {
		c.MaxVoters = d.MaxVoters
	}
	if c.BackendTimeout == 0 {
		c.BackendTimeout = d.BackendTimeout
	}
	if c.MaxBulkBytes == 0 {
		c.MaxBulkBytes = d.MaxBulkBytes
	}
	if c.MaxMultibulk == 0 {
		c.MaxMultibulk = d.MaxMultibulk
	}
}

// confKeyError is a problem with one key, named by its path ("listen", "groups[1].master").
type confKeyError struct {
	key string
	msg string
}

func (e *confKeyError) Error() string { return e.key + ": " + e.msg }

// Validate checks every field and returns all problems found, each naming its key. It also
// normalises what it accepts: consistency levels to redraft's names, the log level to lower
// case.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, &confKeyError{key: key, msg: fmt.Sprintf(format, a...)})
	}
	if c.ID == "" {
		bad("id", "is required: a name for this node (letters, digits, '-', '_' and '.')")
	} else if msg := confCheckName(c.ID); msg != "" {
		bad("id", "%s", msg)
	}
	if c.DC == "" {
		bad("datacenter", "is required")
	} else if msg := confCheckName(c.DC); msg != "" {
		bad("datacenter", "%s", msg)
	}
	if c.Rack != "" {
		if msg := confCheckName(c.Rack); msg != "" {
			bad("rack", "%s", msg)
		}
	}
	seenTok := map[uint32]bool{}
	for _, t := range c.Tokens {
		if seenTok[t] {
			bad("tokens", "token %d is listed twice", t)
		}
		seenTok[t] = true
	}
	listens := []struct{ key, v string }{{"listen", c.Listen}, {"peer_listen", c.PeerListen}, {"admin_listen", c.AdminListen}}
	if c.TLSListen != "" {
		listens = append(listens, struct{ key, v string }{"tls_listen", c.TLSListen})
	}
	for i, l := range listens {
		if l.key == "listen" && l.v == ListenNone {
			continue
		}
		if msg := confCheckAddr(l.v, true); msg != "" {
			bad(l.key, "%s", msg)
			continue
		}
		for _, o := range listens[:i] {
			if confSameListener(l.v, o.v) {
				bad(l.key, "%s is also %s: each address needs its own port", l.v, o.key)
			}
		}
	}
	if c.Advertise != "" {
		if msg := confCheckAdvertise(c.Advertise); msg != "" {
			bad("advertise", "%s", msg)
		}
	}
	if c.DataDir == "" {
		bad("data_dir", "is required (default data/<id>)")
	}
	for i, s := range c.Seeds {
		if msg := confCheckAddr(s, false); msg != "" {
			bad(fmt.Sprintf("seeds[%d]", i), "%s", msg)
		}
	}
	if c.MaxVoters < 1 || c.MaxVoters > 9 {
		bad("max_voters", "%d is not from 1 to 9", c.MaxVoters)
	}
	if c.Procs < 0 || c.Procs > 1024 {
		bad("procs", "%d is not from 0 (half the CPUs) to 1024", c.Procs)
	}
	c.validateGroups(bad)
	c.validateClients(bad)
	for _, k := range []struct {
		key string
		p   *string
	}{{"read_consistency", &c.ReadConsistency}, {"write_consistency", &c.WriteConsistency}} {
		if *k.p == "" {
			continue
		}
		if v, err := fsm.NormalizeConsistency(*k.p); err != nil {
			bad(k.key, "%v", err)
		} else {
			*k.p = v
		}
	}
	if c.BackendTimeout <= 0 {
		bad("backend_timeout", "%s is not a positive duration", c.BackendTimeout)
	}
	if c.MaxBulkBytes <= 0 {
		bad("max_bulk_bytes", "%d is not a positive number of bytes", c.MaxBulkBytes)
	}
	if c.MaxMultibulk <= 0 {
		bad("max_multibulk", "%d is not a positive number", c.MaxMultibulk)
	}
	if c.TLSCertFile != "" && c.TLSKeyFile == "" {
		bad("tls_key_file", "is required when tls_cert_file is set")
	}
	c.validateSecurity(bad)
	switch lv := strings.ToLower(c.LogLevel); lv {
	case "debug", "info", "warn", "error":
		c.LogLevel = lv
	case "warning":
		c.LogLevel = "warn"
	default:
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}

func (c *Config) validateGroups(bad func(key, format string, a ...any)) {
	ids := map[string]int{}
	addrs := map[string]string{}
	for i, g := range c.Groups {
		key := fmt.Sprintf("groups[%d]", i)
		if g.ID == "" {
			bad(key+".id", "is required")
		} else if msg := confCheckName(g.ID); msg != "" {
			bad(key+".id", "%s", msg)
		} else if j, ok := ids[g.ID]; ok {
			bad(key+".id", "group %s is also groups[%d]", g.ID, j)
		} else {
			ids[g.ID] = i
		}
		if g.Master == "" {
			bad(key+".master", "is required: the group's Redis master, HOST:PORT")
		}
		all := append([]string{g.Master}, g.Replicas...)
		for j, a := range all {
			if a == "" && j == 0 {
				continue
			}
			k := key + ".master"
			if j > 0 {
				k = fmt.Sprintf("%s.replicas[%d]", key, j-1)
			}
			if msg := confCheckAddr(a, false); msg != "" {
				bad(k, "%s", msg)
				continue
			}
			if o, ok := addrs[a]; ok {
				bad(k, "address %s is also %s", a, o)
				continue
			}
			addrs[a] = k
		}
	}
}

// confCheckName checks an id as fsm does: letters, digits, '-', '_' and '.', up to 64 bytes.
func confCheckName(v string) string {
	if len(v) > 64 {
		return fmt.Sprintf("%q is longer than 64 bytes", v)
	}
	if strings.IndexFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Sprintf("%q may hold only letters, digits, '-', '_' and '.'", v)
	}
	if v == "." || v == ".." {
		// A node's default data_dir is data/<id>: ".." would be the working directory.
		return fmt.Sprintf("%q is not a name (it names a directory)", v)
	}
	return ""
}

// confCheckAddr checks a HOST:PORT address. A listen address may leave the host out (all
// interfaces) and use port 0 (any free port); an address to dial may not.
func confCheckAddr(a string, listen bool) string {
	host, port, err := net.SplitHostPort(a)
	if err != nil || strings.ContainsAny(host, " \t/") {
		return fmt.Sprintf("%q is not HOST:PORT (example: 10.0.0.5:6379)", a)
	}
	if host == "" && !listen {
		return fmt.Sprintf("%q has no host (example: 10.0.0.5:6379)", a)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !listen) {
		return fmt.Sprintf("%q has a bad port %q (1 to 65535)", a, port)
	}
	return ""
}

// confSameListener reports whether two valid listen addresses would collide.
func confSameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	all := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || ip != nil && ip.IsUnspecified()
	}
	return ha == hb || all(ha) || all(hb)
}

func confCheckAdvertise(h string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return fmt.Sprintf("%q has a port: give only the host; the ports come from listen, peer_listen and admin_listen", h)
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		return fmt.Sprintf("%q is not an address others can reach", h)
	}
	if strings.ContainsAny(h, " \t/") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return fmt.Sprintf("%q is not a host name or IP address", h)
	}
	return ""
}

// LoadConfig reads the node file at path: redraft's own YAML, or a Dynomite node file (one
// top-level pool key such as dyn_o_mite: holding dyn_listen or servers), which is mapped.
// Defaults are applied and the result validated. Warnings name keys that were read but have no
// effect, and choices made for the operator; errors name the file, line and key.
func LoadConfig(path string) (cfg Config, warnings []string, err error) {
	return LoadConfigWith(path, nil)
}

// LoadConfigWith is LoadConfig with override (command-line flags, say) applied to what the file
// says before defaults that depend on other keys (data_dir from id) and validation.
func LoadConfigWith(path string, override func(*Config) error) (cfg Config, warnings []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("config %s: %w", path, err)
	}
	f := &confFile{path: path, lines: map[string]int{}, names: map[string]string{}}
	cfg = DefaultConfig()
	root, err := confParse(data)
	if err != nil {
		return Config{}, nil, fmt.Errorf("config %s: %w", path, err)
	}
	if pool, body, ok := confDynomitePool(root); ok {
		f.decodeDynomite(&cfg, pool, body)
	} else if k := confDynomiteAmong(root); k != nil {
		return Config{}, nil, fmt.Errorf("%s: %q looks like a Dynomite pool, but a Dynomite file holds exactly one top-level key (the pool) and nothing else", f.pos(k.Line), k.Value)
	} else {
		confDecodeMapping(f, &cfg, root, confFields, nil)
	}
	if override != nil && len(f.errs) == 0 {
		if err := override(&cfg); err != nil {
			return Config{}, f.warns, err
		}
	}
	if f.wantsTLS != "" && cfg.TLSCertFile == "" {
		f.errorAt(f.wantsTLSLine, "secure_server_option: is %q but pem_key_file is not set: redraft does not run the peer port in plaintext when the file asks for encryption; set pem_key_file (the key and certificate), --tls-cert-file and --tls-key-file, or secure_server_option: none", f.wantsTLS)
	}
	// cfg started from DefaultConfig, so only what depends on other keys is left to fill in;
	// ApplyDefaults would also hide an explicit "max_voters: 0" from Validate.
	if cfg.DataDir == "" && cfg.ID != "" {
		cfg.DataDir = "data/" + cfg.ID
	}
	if verr := cfg.Validate(); verr != nil {
		for _, e := range confUnjoin(verr) {
			var ke *confKeyError
			if !errors.As(e, &ke) {
				f.errorAt(0, "%v", e)
				continue
			}
			if f.failed[ke.key] {
				continue // already reported while decoding
			}
			line, name := f.locate(ke.key)
			f.errorAt(line, "%s: %s", name, ke.msg)
		}
	}
	if cfg.TLSKeyFile != "" && cfg.TLSCertFile == "" && f.names["tls_key_file"] == "" {
		f.warn(f.lines["tls_key_file"], "tls_key_file", "is set without tls_cert_file: peer traffic is not encrypted")
	}
	if len(f.errs) > 0 {
		// In file order; problems of the whole file (line 0) first.
		sort.SliceStable(f.errs, func(i, j int) bool { return f.errs[i].line < f.errs[j].line })
		errs := make([]error, len(f.errs))
		for i, e := range f.errs {
			errs[i] = e.err
		}
		return Config{}, f.warns, errors.Join(errs...)
	}
	return cfg, f.warns, nil
}

func confUnjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// confParse parses one YAML document and returns its root node.
func confParse(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("the file is empty")
		}
		return nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); err != io.EOF {
		return nil, errors.New("the file holds more than one YAML document (---): keep one node's configuration per file")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = confResolve(root)
	if confIsNull(root) {
		return nil, errors.New("the file is empty")
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: expected keys and values (id: n1), got %s", root.Line, confKind(root))
	}
	return root, nil
}

// String renders d as time.Duration does ("3s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes d as "3s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "250ms", "3s", "1m30s", or a whole number of milliseconds.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := confParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// UnmarshalYAML reads "250ms", "3s", "1m30s", or a whole number of milliseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s, err := confScalar(confResolve(n), "a duration such as 3s")
	if err != nil {
		return err
	}
	return d.UnmarshalText([]byte(s))
}

func confParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(t, 10, 64); err == nil {
		if ms > int64(1<<63-1)/int64(time.Millisecond) || ms < -int64(1<<63-1)/int64(time.Millisecond) {
			return 0, fmt.Errorf("%q milliseconds is too long", s)
		}
		return Duration(time.Duration(ms) * time.Millisecond), nil
	}
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 250ms, 3s, 1m, or 3000 for milliseconds)", s)
	}
	return Duration(v), nil
}
