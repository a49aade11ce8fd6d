package fsm

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// SetSetting changes one cluster-wide setting.
type SetSetting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func init() {
	register(TypeSetSetting, func() Command { return &SetSetting{} })
}

// setting describes one known cluster setting: its default and how values are checked and
// normalised.
type setting struct {
	def   string
	help  string
	check func(v string) (string, error)
}

// Consistency levels for writes (DESIGN.md, "Cross-DC replication").
const (
	DCOne            = "DC_ONE"
	DCQuorum         = "DC_QUORUM"
	DCEachSafeQuorum = "DC_EACH_SAFE_QUORUM"
)

var settings = map[string]setting{
	"write_consistency":        {def: DCOne, help: "default write consistency: DC_ONE, DC_QUORUM or DC_EACH_SAFE_QUORUM", check: checkConsistency},
	"read_consistency":         {def: DCOne, help: "default read consistency: DC_ONE, DC_QUORUM or DC_EACH_SAFE_QUORUM", check: checkConsistency},
	"max_voters":               {def: "5", help: "Raft voters at most; further nodes join as non-voters", check: intRange(1, 9)},
	"flush_enabled":            {def: "true", help: "whether FLUSHDB and FLUSHALL are served", check: checkBool},
	"config_set":               {def: "true", help: "whether CONFIG SET of data-path parameters (encodings, eviction, ...) is applied to every group", check: checkBool},
	"convergence":              {def: "true", help: "whether replicated writes carry the stamps and per-key metadata that make every DC converge (docs/convergence.md); false: each DC applies writes in arrival order, cheaper, and concurrent writes to one key in two DCs can leave the DCs different", check: checkBool},
	"outbox_max_entries":       {def: "1000000", help: "entries a slot outbox keeps for a DC that is behind before it is copied in full", check: intRange(1000, 1<<40)},
	"migrate_big_key_elements": {def: "10000", help: "collections with more elements move in chunks", check: intRange(1, 1<<40)},
	"migrate_big_key_bytes":    {def: "8388608", help: "values larger than this many bytes move in chunks", check: intRange(1, 1<<40)},
	"master_down_after":        {def: "3s", help: "a group master a majority of its DC's nodes cannot reach for this long is failed over", check: durationRange(100*time.Millisecond, 10*time.Minute)},
	"read_from":                {def: ReadMaster, help: "where reads go by default: master, replica (same-rack replicas first, then the DC's) or nearest (same-rack server first); READONLY and READWRITE change it per connection", check: checkReadFrom},
	"replica_max_lag":          {def: "1s", help: "a replica read never misses a write acknowledged longer ago than this; replicas further behind are skipped", check: durationRange(500*time.Millisecond, time.Hour)},
}

// Where reads go (setting read_from).
const (
	ReadMaster  = "master"
	ReadReplica = "replica"
	ReadNearest = "nearest"
)

func checkReadFrom(v string) (string, error) {
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case ReadMaster, ReadReplica, ReadNearest:
		return v, nil
	}
	return "", errf("invalid", "%q is not master, replica or nearest", v)
}

// SettingKeys returns the known setting keys, sorted.
func SettingKeys() []string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SettingHelp returns the one-line description of a setting key.
func SettingHelp(key string) string { return settings[key].help }

// Setting returns the value of key, or its default when unset.
func (s *State) Setting(key string) string {
	if v, ok := s.Settings[key]; ok {
		return v
	}
	return settings[key].def
}

// SettingInt returns an integer setting (0 for an unknown key).
func (s *State) SettingInt(key string) int64 {
	n, _ := strconv.ParseInt(s.Setting(key), 10, 64)
	return n
}

// Type implements Command.
func (*SetSetting) Type() CmdType { return TypeSetSetting }

// Name implements Command.
func (*SetSetting) Name() string { return "set_setting" }

func (c *SetSetting) apply(s *State, _ uint64) error {
	def, ok := settings[c.Key]
	if !ok {
		return errf("invalid", "unknown setting %q (known: %s)", c.Key, strings.Join(SettingKeys(), ", "))
	}
	v, err := def.check(c.Value)
	if err != nil {
		return errf("invalid", "setting %s: %v", c.Key, err)
	}
	s.Settings[c.Key] = v
	return nil
}

// NormalizeConsistency maps a level, in redraft's or Dynomite's spelling, to redraft's name.
func NormalizeConsistency(v string) (string, error) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "DC_ONE", "ONE":
		return DCOne, nil
	case "DC_QUORUM", "QUORUM", "DC_LOCAL_QUORUM", "DC_SAFE_QUORUM":
		// Dynomite's DC_SAFE_QUORUM is a quorum in the local DC (plus checksums): DC_QUORUM here.
		return DCQuorum, nil
	case "DC_EACH_SAFE_QUORUM", "EACH_SAFE_QUORUM":
		return DCEachSafeQuorum, nil
	}
	return "", errf("invalid", "%q is not a consistency level (DC_ONE, DC_QUORUM, DC_EACH_SAFE_QUORUM)", v)
}

func checkConsistency(v string) (string, error) { return NormalizeConsistency(v) }

func checkBool(v string) (string, error) {
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		return "", errf("invalid", "%q is not true or false", v)
	}
	return strconv.FormatBool(b), nil
}

// SettingDuration returns a duration setting (0 for an unknown key or a value that is not one).
func (s *State) SettingDuration(key string) time.Duration {
	d, _ := time.ParseDuration(s.Setting(key))
	return d
}

func durationRange(lo, hi time.Duration) func(string) (string, error) {
	return func(v string) (string, error) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < lo || d > hi {
			return "", errf("invalid", "%q is not a duration from %s to %s (such as 3s or 500ms)", v, lo, hi)
		}
		return d.String(), nil
	}
}

func intRange(lo, hi int64) func(string) (string, error) {
	return func(v string) (string, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < lo || n > hi {
			return "", errf("invalid", "%q is not a whole number from %d to %d", v, lo, hi)
		}
		return strconv.FormatInt(n, 10), nil
	}
}
