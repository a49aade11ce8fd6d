package node

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/redraft/redraft/fsm"
)

// confFile collects what decoding one file found.
type confFile struct {
	path string
	// lines holds the line of each key read, by redraft key path.
	lines map[string]int
	// names holds the key as written where it differs from redraft's (Dynomite files).
	names map[string]string
	// failed marks keys whose value was already reported as bad.
	failed map[string]bool
	errs   []confLineError
	warns  []string
	// wantsTLS is a Dynomite file's secure_server_option other than none without its
	// pem_key_file, and its line: refused unless TLS is configured otherwise once the
	// overrides are applied (dynoTLS, LoadConfigWith).
	wantsTLS     string
	wantsTLSLine int
}

// confLineError is one problem found in a file, with its line (0: the whole file).
type confLineError struct {
	line int
	err  error
}

// errorAt records a problem at line, prefixed with the file and line.
func (f *confFile) errorAt(line int, format string, a ...any) {
	f.errs = append(f.errs, confLineError{line, fmt.Errorf("%s: %s", f.pos(line), fmt.Sprintf(format, a...))})
}

func (f *confFile) pos(line int) string {
	if line > 0 {
		return fmt.Sprintf("config %s:%d", f.path, line)
	}
	return "config " + f.path
}

func (f *confFile) fail(line int, key string, format string, a ...any) {
	if f.failed == nil {
		f.failed = map[string]bool{}
	}
	f.failed[key] = true
	name := key
	if n, ok := f.names[key]; ok {
		name = n
	}
	f.errorAt(line, "%s: %s", name, fmt.Sprintf(format, a...))
}

func (f *confFile) warn(line int, key string, format string, a ...any) {
	f.warns = append(f.warns, fmt.Sprintf("%s: %s %s", f.pos(line), key, fmt.Sprintf(format, a...)))
}

// locate returns the line and the name as written of a key path, falling back to its parents
// ("groups[1].master" → "groups[1]" → "groups").
func (f *confFile) locate(key string) (int, string) {
	for k := key; k != ""; {
		if line, ok := f.lines[k]; ok {
			if n, ok := f.names[k]; ok {
				return line, n + " (" + key + ")"
			}
			return line, key
		}
		if i := strings.LastIndexAny(k, ".["); i > 0 {
			k = k[:i]
		} else {
			break
		}
	}
	return 0, key
}

// confField decodes one key of a mapping into a target.
type confField[T any] struct {
	name string
	set  func(f *confFile, t *T, key string, n *yaml.Node) error
}

// confFields are redraft's own keys, in the order docs/configuration.md lists them.
var confFields = []confField[Config]{
	{"id", confStr(func(c *Config) *string { return &c.ID })},
	{"datacenter", confStr(func(c *Config) *string { return &c.DC })},
	{"rack", confStr(func(c *Config) *string { return &c.Rack })},
	{"tokens", func(_ *confFile, c *Config, _ string, n *yaml.Node) (err error) {
		c.Tokens, err = confTokens(n)
		return err
	}},
	{"listen", confStr(func(c *Config) *string { return &c.Listen })},
	{"peer_listen", confStr(func(c *Config) *string { return &c.PeerListen })},
	{"admin_listen", confStr(func(c *Config) *string { return &c.AdminListen })},
	{"advertise", confStr(func(c *Config) *string { return &c.Advertise })},
	{"data_dir", confStr(func(c *Config) *string { return &c.DataDir })},
	{"seeds", func(_ *confFile, c *Config, _ string, n *yaml.Node) (err error) {
		c.Seeds, err = confStrList(n)
		return err
	}},
	{"max_voters", func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		v, err := confInt(n, 32)
		c.MaxVoters = int(v)
		return err
	}},
	{"password", confStr(func(c *Config) *string { return &c.Password })},
	{"users", confUsers},
	{"tls_listen", confStr(func(c *Config) *string { return &c.TLSListen })},
	{"client_tls_cert_file", confStr(func(c *Config) *string { return &c.ClientTLSCertFile })},
	{"client_tls_key_file", confStr(func(c *Config) *string { return &c.ClientTLSKeyFile })},
	{"client_tls_ca_file", confStr(func(c *Config) *string { return &c.ClientTLSCAFile })},
	{"client_tls_auth", confStr(func(c *Config) *string { return &c.ClientTLSAuth })},
	{"groups", func(f *confFile, c *Config, key string, n *yaml.Node) error {
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("expected a list of groups (- id: g1), got %s", confShape(n))
		}
		c.Groups = make([]GroupConfig, len(n.Content))
		for i, item := range n.Content {
			item = confResolve(item)
			k := fmt.Sprintf("%s[%d]", key, i)
			f.lines[k] = item.Line
			if item.Kind != yaml.MappingNode {
				f.fail(item.Line, k, "expected a group (id:, master:, replicas:), got %s", confShape(item))
				continue
			}
			confDecodeMapping(f, &c.Groups[i], item, confGroupFields, &k)
		}
		return nil
	}},
	{"read_consistency", confConsistency(func(c *Config) *string { return &c.ReadConsistency })},
	{"write_consistency", confConsistency(func(c *Config) *string { return &c.WriteConsistency })},
	{"backend_timeout", func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		return c.BackendTimeout.UnmarshalYAML(n)
	}},
	{"max_bulk_bytes", func(_ *confFile, c *Config, _ string, n *yaml.Node) (err error) {
		c.MaxBulkBytes, err = confSize(n)
		return err
	}},
	{"max_multibulk", func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		v, err := confInt(n, 32)
		c.MaxMultibulk = int(v)
		return err
	}},
	{"flush_enabled", func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		b, err := confBool(n)
		if err == nil {
			c.FlushEnabled = &b
		}
		return err
	}},
	{"tls_cert_file", confStr(func(c *Config) *string { return &c.TLSCertFile })},
	{"tls_key_file", confStr(func(c *Config) *string { return &c.TLSKeyFile })},
	{"tls_ca_file", confStr(func(c *Config) *string { return &c.TLSCAFile })},
	{"cluster_secret", confStr(func(c *Config) *string { return &c.ClusterSecret })},
	{"cluster_secret_file", confStr(func(c *Config) *string { return &c.ClusterSecretFile })},
	{"admin_token", confStr(func(c *Config) *string { return &c.AdminToken })},
	{"admin_token_file", confStr(func(c *Config) *string { return &c.AdminTokenFile })},
	{"admin_open_metrics", func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		b, err := confBool(n)
		if err == nil {
			c.AdminOpenMetrics = &b
		}
		return err
	}},
	{"admin_tls_cert_file", confStr(func(c *Config) *string { return &c.AdminTLSCertFile })},
	{"admin_tls_key_file", confStr(func(c *Config) *string { return &c.AdminTLSKeyFile })},
	{"log_level", confStr(func(c *Config) *string { return &c.LogLevel })},
	{"procs", func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		v, err := confInt(n, 32)
		c.Procs = int(v)
		return err
	}},
}

var confGroupFields = []confField[GroupConfig]{
	{"id", confStr(func(g *GroupConfig) *string { return &g.ID })},
	{"master", confStr(func(g *GroupConfig) *string { return &g.Master })},
	{"replicas", func(_ *confFile, g *GroupConfig, _ string, n *yaml.Node) (err error) {
		g.Replicas, err = confStrList(n)
		return err
	}},
	{"user", confStr(func(g *GroupConfig) *string { return &g.User })},
	{"password", confStr(func(g *GroupConfig) *string { return &g.Password })},
}

// confAliases suggests redraft's key for names other programs (and people) use.
var confAliases = map[string]string{
	"dyn_listen": "peer_listen", "stats_listen": "admin_listen", "dyn_seeds": "seeds",
	"servers": "groups", "requirepass": "password", "dc": "datacenter", "timeout": "backend_timeout",
	"name": "id", "node_id": "id", "dir": "data_dir", "datadir": "data_dir", "loglevel": "log_level",
	"proto_max_bulk_len": "max_bulk_bytes", "proto-max-bulk-len": "max_bulk_bytes",
	"bind": "listen", "addr": "listen", "address": "listen", "join": "seeds",
	"gomaxprocs": "procs", "ncpu": "procs", "threads": "procs",
}

// confDecodeMapping reads every key of m into t with the given fields; prefix is the key path of m
// (nil at the top level).
func confDecodeMapping[T any](f *confFile, t *T, m *yaml.Node, fields []confField[T], prefix *string) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, vn := m.Content[i], confResolve(m.Content[i+1])
		name := kn.Value
		key := name
		if prefix != nil {
			key = *prefix + "." + name
		}
		if !f.plainNewKey(kn, key, seen) {
			continue
		}
		fi := -1
		for j := range fields {
			if fields[j].name == name {
				fi = j
			}
		}
		if fi < 0 {
			names := make([]string, len(fields))
			for j := range fields {
				names[j] = fields[j].name
			}
			f.errorAt(kn.Line, "unknown key %q%s", key, confSuggest(name, names))
			continue
		}
		f.lines[key] = kn.Line
		if confIsNull(vn) {
			continue // "key:" with no value keeps the default
		}
		if err := fields[fi].set(f, t, key, vn); err != nil {
			f.fail(vn.Line, key, "%v", err)
		}
	}
}

// confSuggest returns ` (did you mean "x"?)` for the known name nearest to name, or "".
func confSuggest(name string, known []string) string {
	if a, ok := confAliases[strings.ToLower(name)]; ok {
		for _, k := range known {
			if k == a {
				return fmt.Sprintf(" (did you mean %q?)", a)
			}
		}
	}
	best, bestD := "", 1<<30
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	for _, k := range sorted {
		if d := confEditDistance(strings.ToLower(name), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" && (bestD <= 2 || bestD <= len(name)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known keys: " + strings.Join(known, ", ") + ")"
}

// confEditDistance is the Levenshtein distance between a and b.
func confEditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func confResolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func confIsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// confKind describes a node for an error message.
func confKind(n *yaml.Node) string {
	switch n = confResolve(n); {
	case confIsNull(n):
		return "nothing"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "keys and values"
	}
	return fmt.Sprintf("%q", n.Value)
}

// confShape is confKind without a scalar's text: for the places where a misplaced value may
// be a password (users: - shop:s3cret, a group written as one line with its password).
func confShape(n *yaml.Node) string {
	if k := confKind(n); !strings.HasPrefix(k, `"`) {
		return k
	}
	return "a single value (not shown: it may hold a password)"
}

// confScalar returns a scalar's text or an error naming what was found instead.
func confScalar(n *yaml.Node, want string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("expected %s, got %s", want, confKind(n))
	}
	return n.Value, nil
}

func confStr[T any](field func(*T) *string) func(*confFile, *T, string, *yaml.Node) error {
	return func(_ *confFile, t *T, _ string, n *yaml.Node) error {
		v, err := confScalar(n, "a single value")
		*field(t) = v
		return err
	}
}

func confConsistency(field func(*Config) *string) func(*confFile, *Config, string, *yaml.Node) error {
	return func(_ *confFile, c *Config, _ string, n *yaml.Node) error {
		v, err := confScalar(n, "a consistency level")
		if err != nil {
			return err
		}
		if v, err = fsm.NormalizeConsistency(v); err != nil {
			return err
		}
		*field(c) = v
		return nil
	}
}

// confStrList reads a list of strings; one string is a list of one (commas separate items).
func confStrList(n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		var out []string
		for _, p := range strings.Split(n.Value, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("expected a list, got %s", confKind(n))
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		v, err := confScalar(confResolve(item), "a single value")
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// confInt reads a whole number that fits in bits.
func confInt(n *yaml.Node, bits int) (int64, error) {
	v, err := confScalar(n, "a whole number")
	if err != nil {
		return 0, err
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(v), "_", ""), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", v)
	}
	return i, nil
}

func confBool(n *yaml.Node) (bool, error) {
	v, err := confScalar(n, "true or false")
	if err != nil {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", v)
}

// confSize reads a byte count: a whole number or one with a Redis unit (k=1000, kb=1024, m, mb,
// g, gb; any case).
func confSize(n *yaml.Node) (int64, error) {
	v, err := confScalar(n, "a size in bytes")
	if err != nil {
		return 0, err
	}
	s := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v), "_", ""))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i > (1<<62)/mult || i < -(1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size in bytes (examples: 536870912, 512mb)", v)
	}
	return i * mult, nil
}

// confTokens reads tokens as a list of numbers, one number, or Dynomite's string "1,2,3".
func confTokens(n *yaml.Node) ([]uint32, error) {
	var items []string
	switch n.Kind {
	case yaml.ScalarNode:
		items = strings.Split(n.Value, ",")
	case yaml.SequenceNode:
		for _, item := range n.Content {
			v, err := confScalar(confResolve(item), "a token (a number)")
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
	default:
		return nil, fmt.Errorf("expected a list of tokens, got %s", confKind(n))
	}
	out := make([]uint32, 0, len(items))
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		t, err := strconv.ParseUint(it, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("token %q is not a whole number from 0 to 4294967295", it)
		}
		out = append(out, uint32(t))
	}
	return out, nil
}

// plainNewKey checks a mapping key: a plain scalar (no merge or complex key) not given before
// in the same mapping. It reports the problem under key and records the key in seen.
func (f *confFile) plainNewKey(kn *yaml.Node, key string, seen map[string]int) bool {
	if kn.Kind != yaml.ScalarNode || kn.Value == "<<" {
		f.fail(kn.Line, key, "is not a plain key (merge keys and complex keys are not supported)")
		return false
	}
	if line, dup := seen[kn.Value]; dup {
		f.fail(kn.Line, key, "is given twice (also on line %d)", line)
		return false
	}
	seen[kn.Value] = kn.Line
	return true
}
