package node

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func boolp(b bool) *bool { return &b }

func TestLoadConfigFull(t *testing.T) {
	cfg, warns, err := LoadConfig("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	want := Config{
		ID: "n1", DC: "east", Rack: "r1", Tokens: []uint32{0, 2147483648},
		Listen: "0.0.0.0:6380", PeerListen: "10.0.0.1:7380", AdminListen: "127.0.0.1:8380",
		Advertise: "10.0.0.1", DataDir: "/var/lib/redraft/n1",
		Seeds: []string{"10.0.0.2:7380", "10.0.0.3:8380"}, MaxVoters: 3, Password: "s3cret",
		Groups: []GroupConfig{
			{ID: "g1", Master: "10.0.1.1:6379", Replicas: []string{"10.0.1.2:6379"}},
			{ID: "g2", Master: "10.0.1.3:6379", Password: "backendpw"},
		},
		ReadConsistency: "DC_ONE", WriteConsistency: "DC_QUORUM",
		BackendTimeout: Duration(1500 * time.Millisecond), MaxBulkBytes: 64 << 20, MaxMultibulk: 65536,
		FlushEnabled: boolp(false), TLSCertFile: "/etc/redraft/n1.crt", TLSKeyFile: "/etc/redraft/n1.key",
		LogLevel: "debug",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, warns, err := LoadConfig("testdata/minimal.yaml")
	if err != nil || len(warns) != 0 {
		t.Fatal(err, warns)
	}
	want := DefaultConfig()
	want.ID, want.DataDir = "n1", "data/n1"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	d := DefaultConfig()
	if d.Listen != "127.0.0.1:6380" || d.PeerListen != "127.0.0.1:7380" || d.AdminListen != "127.0.0.1:8380" ||
		d.DC != "dc1" || d.MaxVoters != 5 || time.Duration(d.BackendTimeout) != 3*time.Second ||
		d.MaxBulkBytes != 512<<20 || d.MaxMultibulk != 1048576 || d.LogLevel != "info" || d.DataDir != "" ||
		d.FlushEnabled != nil || d.ReadConsistency != "" || d.WriteConsistency != "" {
		t.Errorf("DefaultConfig() = %+v", d)
	}
}

func TestApplyDefaults(t *testing.T) {
	c := Config{ID: "a", Listen: "127.0.0.1:1", MaxVoters: 7}
	c.ApplyDefaults()
	if c.Listen != "127.0.0.1:1" || c.MaxVoters != 7 || c.DataDir != "data/a" || c.PeerListen != "127.0.0.1:7380" ||
		c.BackendTimeout != Duration(3*time.Second) {
		t.Errorf("ApplyDefaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	var empty Config
	empty.ApplyDefaults()
	if empty.DataDir != "" {
		t.Errorf("DataDir without id = %q", empty.DataDir)
	}
	err := empty.Validate()
	if err == nil || !strings.Contains(err.Error(), "id: is required") || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("Validate of empty config = %v", err)
	}
}

// writeConf writes body to a file named n1.yaml in a temporary dir and returns its path.
func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "n1.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string // substrings of the error; "FILE" is replaced by the file's path
	}{
		{"unknown key suggests", "id: n1\nlisen: 127.0.0.1:1\n", []string{`config FILE:2: unknown key "lisen" (did you mean "listen"?)`}},
		{"unknown key case", "id: n1\nPeer_Listen: 127.0.0.1:1\n", []string{`unknown key "Peer_Listen" (did you mean "peer_listen"?)`}},
		{"unknown key alias", "id: n1\ndyn_listen: 127.0.0.1:1\n", []string{`FILE:2: unknown key "dyn_listen" (did you mean "peer_listen"?)`}},
		{"unknown key far", "id: n1\nzzzzzzzzzzzzzz: 1\n", []string{`unknown key "zzzzzzzzzzzzzz" (known keys: id, datacenter`}},
		{"unknown group key", "id: n1\ngroups:\n  - id: g1\n    mastr: 10.0.0.1:6379\n", []string{`FILE:4: unknown key "groups[0].mastr" (did you mean "master"?)`, `FILE:3: groups[0].master: is required`}},
		{"bad listen", "id: n1\nlisten: localhost\n", []string{`FILE:2: listen: "localhost" is not HOST:PORT`}},
		{"bad port", "id: n1\nadmin_listen: 127.0.0.1:99999\n", []string{`FILE:2: admin_listen: "127.0.0.1:99999" has a bad port`}},
		{"seed without host", "id: n1\nseeds: [':7380']\n", []string{`FILE:2: seeds[0]: ":7380" has no host`}},
		{"seed port 0", "id: n1\nseeds:\n  - 10.0.0.1:0\n", []string{`seeds[0]: "10.0.0.1:0" has a bad port`}},
		{"same port twice", "id: n1\nlisten: 0.0.0.0:7000\npeer_listen: 127.0.0.1:7000\n", []string{`FILE:3: peer_listen: 127.0.0.1:7000 is also listen`}},
		{"bad duration", "id: n1\nbackend_timeout: 3x\n", []string{`FILE:2: backend_timeout: "3x" is not a duration`}},
		{"negative duration", "id: n1\nbackend_timeout: -2s\n", []string{`FILE:2: backend_timeout: -2s is not a positive duration`}},
		{"bad consistency", "id: n1\nwrite_consistency: ALL\n", []string{`FILE:2: write_consistency: "ALL" is not a consistency level`}},
		{"bad id", "id: n 1\n", []string{`FILE:1: id: "n 1" may hold only letters, digits`}},
		{"long id", "id: " + strings.Repeat("x", 65) + "\n", []string{`id: "xxx`, `longer than 64 bytes`}},
		{"dot-dot id", "id: ..\n", []string{`id: ".." is not a name`}},
		{"missing id", "datacenter: dc1\n", []string{`config FILE: id: is required`}},
		{"bad datacenter", "id: n1\ndatacenter: us/east\n", []string{`FILE:2: datacenter: "us/east" may hold only`}},
		{"wrong type int", "id: n1\nmax_voters: [1]\n", []string{`FILE:2: max_voters: expected a whole number, got a list`}},
		{"wrong type int text", "id: n1\nmax_multibulk: many\n", []string{`FILE:2: max_multibulk: "many" is not a whole number`}},
		{"wrong type string", "id: n1\nlisten:\n  host: a\n", []string{`FILE:3: listen: expected a single value, got keys and values`}},
		{"wrong type list", "id: n1\nseeds:\n  a: b\n", []string{`FILE:3: seeds: expected a list, got keys and values`}},
		{"wrong type bool", "id: n1\nflush_enabled: maybe\n", []string{`FILE:2: flush_enabled: "maybe" is not true or false`}},
		{"wrong type groups", "id: n1\ngroups: g1\n", []string{`FILE:2: groups: expected a list of groups`}},
		{"wrong type group", "id: n1\ngroups:\n  - g1\n", []string{`FILE:3: groups[0]: expected a group`}},
		{"bad token", "id: n1\ntokens: [1, 4294967296]\n", []string{`FILE:2: tokens: token "4294967296" is not a whole number from 0 to 4294967295`}},
		{"token twice", "id: n1\ntokens: 5,5\n", []string{`FILE:2: tokens: token 5 is listed twice`}},
		{"bad size", "id: n1\nmax_bulk_bytes: 12tb\n", []string{`FILE:2: max_bulk_bytes: "12tb" is not a size in bytes`}},
		{"zero voters", "id: n1\nmax_voters: 0\n", []string{`FILE:2: max_voters: 0 is not from 1 to 9`}},
		{"too many voters", "id: n1\nmax_voters: 10\n", []string{`max_voters: 10 is not from 1 to 9`}},
		{"negative procs", "id: n1\nprocs: -1\n", []string{`FILE:2: procs: -1 is not from 0 (half the CPUs) to 1024`}},
		{"zero multibulk", "id: n1\nmax_multibulk: 0\n", []string{`FILE:2: max_multibulk: 0 is not a positive number`}},
		{"negative bulk", "id: n1\nmax_bulk_bytes: -1\n", []string{`FILE:2: max_bulk_bytes: -1 is not a positive number of bytes`}},
		{"duplicate key", "id: n1\nlisten: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", []string{`FILE:3: listen: is given twice (also on line 2)`}},
		{"group addr twice", "id: n1\ngroups:\n  - id: g1\n    master: 10.0.0.1:6379\n  - id: g2\n    master: 10.0.0.2:6379\n    replicas: [10.0.0.1:6379]\n", []string{`FILE:7: groups[1].replicas[0]: address 10.0.0.1:6379 is also groups[0].master`}},
		{"group id twice", "id: n1\ngroups:\n  - {id: g1, master: 10.0.0.1:6379}\n  - {id: g1, master: 10.0.0.2:6379}\n", []string{`FILE:4: groups[1].id: group g1 is also groups[0]`}},
		{"group bad master", "id: n1\ngroups:\n  - id: g1\n    master: 6379\n", []string{`FILE:4: groups[0].master: "6379" is not HOST:PORT`}},
		{"advertise with port", "id: n1\nadvertise: 10.0.0.1:6380\n", []string{`FILE:2: advertise: "10.0.0.1:6380" has a port`}},
		{"advertise unspecified", "id: n1\nadvertise: 0.0.0.0\n", []string{`advertise: "0.0.0.0" is not an address others can reach`}},
		{"cert without key", "id: n1\ntls_cert_file: a.crt\n", []string{`config FILE: tls_key_file: is required when tls_cert_file is set`}},
		{"bad log level", "id: n1\nlog_level: loud\n", []string{`FILE:2: log_level: "loud" is not debug, info, warn or error`}},
		{"merge key", "id: n1\npassword: &p x\n<<: {rack: r1}\n", []string{`FILE:3: <<: is not a plain key`}},
		{"empty", "", []string{`config FILE: the file is empty`}},
		{"only comments", "# nothing\n", []string{`config FILE: the file is empty`}},
		{"null document", "~\n", []string{`config FILE: the file is empty`}},
		{"two documents", "id: n1\n---\nid: n2\n", []string{`more than one YAML document`}},
		{"top-level list", "- id: n1\n", []string{`config FILE: line 1: expected keys and values (id: n1), got a list`}},
		{"syntax error", "id: n1\n  listen: [\n", []string{`config FILE: yaml: line`}},
		{"several errors at once", "id: n1\nlisen: x\nmax_voters: 0\nlog_level: loud\n", []string{`unknown key "lisen"`, `max_voters: 0`, `log_level: "loud"`}},
		// Dynomite files.
		{"dynomite memcache", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  data_store: 1\n", []string{`FILE:3: data_store: 1 is memcached: redraft proxies only Redis backends`}},
		{"dynomite bad data_store", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  data_store: 7\n", []string{`data_store: 7 is not a data store`}},
		{"dynomite unknown key", "dyn_o_mite:\n  dyn_lsten: 127.0.0.1:8101\n  servers: [127.0.0.1:6379:1]\n", []string{`FILE:2: unknown key "dyn_lsten" in Dynomite pool "dyn_o_mite" (did you mean "dyn_listen"?)`}},
		{"dynomite key both ways", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  peer_listen: 127.0.0.1:8101\n", []string{`FILE:3: peer_listen: dyn_listen already sets peer_listen: keep one of them`}},
		{"dynomite bad secure option", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  secure_server_option: some\n", []string{`FILE:3: secure_server_option: "some" is not none, rack, datacenter or all`}},
		{"dynomite encryption without a key", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  secure_server_option: datacenter\n", []string{`FILE:3: secure_server_option: is "datacenter" but pem_key_file is not set: redraft does not run the peer port in plaintext`}},
		{"dynomite unix server", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  servers:\n  - /tmp/redis.sock:1\n", []string{`FILE:4: servers: "/tmp/redis.sock:1" is a unix socket`}},
		{"dynomite bad server", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  servers:\n  - redis\n", []string{`servers: "redis" is not host:port:weight`}},
		{"dynomite bad seed", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  dyn_seeds:\n  - 10.0.0.1:8101:rack1\n", []string{`FILE:4: dyn_seeds: "10.0.0.1:8101:rack1" is not host:port:rack:dc:token`}},
		{"dynomite bad listen named as written", "dyn_o_mite:\n  dyn_listen: somewhere\n", []string{`FILE:2: dyn_listen (peer_listen): "somewhere" is not HOST:PORT`}},
		{"dynomite bad timeout", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  timeout: soon\n", []string{`FILE:3: timeout: "soon" is not a duration`}},
		{"dynomite bad consistency", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  read_consistency: dc_all\n", []string{`FILE:3: read_consistency: "dc_all" is not a consistency level`}},
		{"dynomite bad token", "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  tokens: 'abc'\n", []string{`FILE:3: tokens: token "abc" is not a whole number`}},
		{"dynomite pool among other keys", "id: n1\ndyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n", []string{`FILE:2: "dyn_o_mite" looks like a Dynomite pool, but a Dynomite file holds exactly one top-level key`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConf(t, tc.body)
			cfg, _, err := LoadConfig(p)
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if !reflect.DeepEqual(cfg, Config{}) {
				t.Errorf("a config came back with the error: %+v", cfg)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "FILE", p)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, _, err := LoadConfig("testdata/nope.yaml")
	if err == nil || !strings.Contains(err.Error(), "config testdata/nope.yaml") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func TestLoadConfigNullKeepsDefault(t *testing.T) {
	cfg, _, err := LoadConfig(writeConf(t, "id: n1\nlisten:\nseeds:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:6380" || cfg.Seeds != nil {
		t.Errorf("got %+v", cfg)
	}
}

func TestLoadConfigLenientForms(t *testing.T) {
	cfg, _, err := LoadConfig(writeConf(t, "id: n1\ntokens: 7\nseeds: 10.0.0.1:7380, 10.0.0.2:7380\nmax_voters: '3'\n"+
		"backend_timeout: 250\nmax_bulk_bytes: 1kb\nflush_enabled: yes\nlog_level: warning\nlisten: ':0'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Tokens, []uint32{7}) || !reflect.DeepEqual(cfg.Seeds, []string{"10.0.0.1:7380", "10.0.0.2:7380"}) ||
		cfg.MaxVoters != 3 || cfg.BackendTimeout != Duration(250*time.Millisecond) || cfg.MaxBulkBytes != 1024 ||
		cfg.FlushEnabled == nil || !*cfg.FlushEnabled || cfg.LogLevel != "warn" || cfg.Listen != ":0" {
		t.Errorf("got %+v", cfg)
	}
}

func TestLoadConfigAlias(t *testing.T) {
	cfg, _, err := LoadConfig(writeConf(t, "id: n1\ngroups:\n  - id: g1\n    master: &m 10.0.0.1:6379\nseeds: [*m]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Seeds[0] != "10.0.0.1:6379" {
		t.Errorf("alias not followed: %+v", cfg.Seeds)
	}
}

func TestLoadConfigKeyWithoutCertWarns(t *testing.T) {
	_, warns, err := LoadConfig(writeConf(t, "id: n1\ntls_key_file: k.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], ":2: tls_key_file is set without tls_cert_file") {
		t.Errorf("warnings %q", warns)
	}
}

// A Dynomite file that asks for encryption without its pem_key_file is refused (it ran the peer
// port in plaintext, open to whoever reached it), unless the flags configure TLS.
func TestDynomiteEncryptionNeedsAKey(t *testing.T) {
	p := writeConf(t, "dyn_o_mite:\n  dyn_listen: 127.0.0.1:8101\n  secure_server_option: datacenter\n")
	if _, _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "pem_key_file is not set") {
		t.Fatalf("without a key: %v", err)
	}
	cfg, _, err := LoadConfigWith(p, func(c *Config) error {
		c.TLSCertFile, c.TLSKeyFile = "cert.pem", "key.pem"
		return nil
	})
	if err != nil || cfg.TLSCertFile != "cert.pem" {
		t.Fatalf("with TLS from the flags: %v, cert %q", err, cfg.TLSCertFile)
	}
}

func TestLoadDynomite(t *testing.T) {
	cfg, warns, err := LoadConfig("testdata/dynomite.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.ID, want.DataDir = "dc1-rack1-12345678", "data/dc1-rack1-12345678"
	want.DC, want.Rack, want.Tokens = "dc1", "rack1", []uint32{12345678}
	want.Listen, want.PeerListen, want.AdminListen = "0.0.0.0:8102", "0.0.0.0:8101", "0.0.0.0:22222"
	want.Seeds = []string{"127.0.0.2:8101"}
	want.Groups = []GroupConfig{{ID: "g-127.0.0.1-22122", Master: "127.0.0.1:22122"}}
	want.TLSCertFile, want.TLSKeyFile = "conf/dynomite.pem", "conf/dynomite.pem"
	want.ReadConsistency, want.WriteConsistency = "DC_ONE", "DC_QUORUM"
	want.BackendTimeout = Duration(150 * time.Second)
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	wantWarns := []string{
		`testdata/dynomite.yml:13: secure_server_option is "datacenter": redraft encrypts all peer traffic (Raft, RPC, replication), within the datacenter too`,
		`testdata/dynomite.yml:18: dyn_seed_provider has no meaning in redraft and is ignored: seeds come from this file`,
		`testdata/dynomite.yml:9: servers has the loopback address 127.0.0.1:22122`,
		`testdata/dynomite.yml:1: id is not set (Dynomite files have none): using "dc1-rack1-12345678"`,
	}
	if len(warns) != len(wantWarns) {
		t.Errorf("%d warnings, want %d: %q", len(warns), len(wantWarns), warns)
	}
	for _, w := range wantWarns {
		found := false
		for _, g := range warns {
			found = found || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("no warning %q in %q", w, warns)
		}
	}
}

func TestLoadDynomiteAllKeys(t *testing.T) {
	cfg, warns, err := LoadConfig("testdata/dynomite_all.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Exactly one warning per ignored key, plus the derived id; secure_server_option: none
	// and data_store: 0 need none.
	for key := range confDynoIgnored {
		n := 0
		for _, w := range warns {
			if strings.Contains(w, ": "+key+" has no meaning in redraft") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d warnings for %s, want 1", n, key)
		}
	}
	if len(warns) != len(confDynoIgnored)+1 {
		t.Errorf("%d warnings, want %d: %q", len(warns), len(confDynoIgnored)+1, warns)
	}
	if cfg.ID != "us-east-1-us-east-1a-0" || cfg.DC != "us-east-1" || cfg.Rack != "us-east-1a" {
		t.Errorf("identity: %+v", cfg)
	}
	if !reflect.DeepEqual(cfg.Tokens, []uint32{0, 1431655765, 2863311530}) {
		t.Errorf("tokens %v", cfg.Tokens)
	}
	wantGroups := []GroupConfig{{ID: "g-10.0.1.1-22122", Master: "10.0.1.1:22122"}, {ID: "g-10.0.1.2-22122", Master: "10.0.1.2:22122"}}
	if !reflect.DeepEqual(cfg.Groups, wantGroups) {
		t.Errorf("groups %+v", cfg.Groups)
	}
	if !reflect.DeepEqual(cfg.Seeds, []string{"10.0.0.2:8101", "10.0.0.3:8101"}) {
		t.Errorf("seeds %v", cfg.Seeds)
	}
	if cfg.ReadConsistency != "DC_QUORUM" || cfg.WriteConsistency != "DC_QUORUM" ||
		cfg.BackendTimeout != Duration(5*time.Second) || cfg.TLSKeyFile != "" {
		t.Errorf("got %+v", cfg)
	}
	// Every key Dynomite knows is either mapped or ignored with a reason.
	for _, k := range []string{"listen", "dyn_listen", "stats_listen", "datacenter", "rack", "tokens", "servers",
		"dyn_seeds", "read_consistency", "write_consistency", "timeout", "data_store", "secure_server_option", "pem_key_file"} {
		if _, ok := confDynoMapped[k]; !ok {
			t.Errorf("%s is not mapped", k)
		}
	}
}

func TestLoadDynomiteWithRedraftKeys(t *testing.T) {
	p := writeConf(t, `dynomite:
  datacenter: dc2
  dyn_listen: 10.0.0.1:8101
  listen: 10.0.0.1:8102
  servers: ['[::1]:22122:1']
  id: east-1
  data_dir: /data/east-1
  password: pw
`)
	cfg, warns, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "east-1" || cfg.DataDir != "/data/east-1" || cfg.Password != "pw" || cfg.Rack != "localrack" {
		t.Errorf("got %+v", cfg)
	}
	if len(cfg.Groups) != 1 || cfg.Groups[0].ID != "g-__1-22122" || cfg.Groups[0].Master != "[::1]:22122" {
		t.Errorf("groups %+v", cfg.Groups)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "loopback") {
		t.Errorf("warnings %q", warns)
	}
}

func TestLoadDynomiteIDWithoutTokens(t *testing.T) {
	cfg, warns, err := LoadConfig(writeConf(t, "pool:\n  dyn_listen: 10.0.0.1:8101\n  listen: 10.0.0.1:8102\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "localdc-localrack-8101" || cfg.DC != "localdc" {
		t.Errorf("got %+v", cfg)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "datacenter-rack-dyn_listen port") {
		t.Errorf("warnings %q", warns)
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"250ms": 250 * time.Millisecond, "3s": 3 * time.Second, "1m30s": 90 * time.Second,
		"3000": 3 * time.Second, "'3000'": 3 * time.Second, "0": 0,
	} {
		var d Duration
		if err := yaml.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: got %v, %v; want %v", in, time.Duration(d), err, want)
		}
	}
	for _, in := range []string{"3x", "1.5", "[1]", "99999999999999999"} {
		var d Duration
		if err := yaml.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s: no error (%v)", in, d)
		}
	}
	out, err := yaml.Marshal(struct {
		T Duration `yaml:"t"`
	}{Duration(1500 * time.Millisecond)})
	if err != nil || string(out) != "t: 1.5s\n" {
		t.Errorf("marshal: %q %v", out, err)
	}
	var d Duration
	if err := d.UnmarshalText([]byte("2s")); err != nil || d.String() != "2s" {
		t.Errorf("text: %v %v", d, err)
	}
}

func TestValidateDirect(t *testing.T) {
	c := DefaultConfig()
	c.ID, c.DataDir = "n1", "d"
	c.ReadConsistency, c.WriteConsistency, c.LogLevel = "dc_quorum", "one", "ERROR"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ReadConsistency != "DC_QUORUM" || c.WriteConsistency != "DC_ONE" || c.LogLevel != "error" {
		t.Errorf("not normalised: %+v", c)
	}
	c.Listen, c.Groups = "nope", []GroupConfig{{ID: "g/1"}}
	err := c.Validate()
	var ke *confKeyError
	if !errors.As(err, &ke) {
		t.Fatalf("err %v is not a key error", err)
	}
	for _, w := range []string{`listen: "nope" is not HOST:PORT`, `groups[0].id: "g/1" may hold only`, `groups[0].master: is required`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v lacks %q", err, w)
		}
	}
	// Listeners on the same port collide when a host is unspecified or equal; port 0 never does.
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{":1", "127.0.0.1:1", true}, {"[::]:1", "10.0.0.1:1", true}, {"10.0.0.1:1", "10.0.0.2:1", false},
		{"127.0.0.1:0", "127.0.0.1:0", false}, {"10.0.0.1:1", "10.0.0.1:2", false},
	} {
		if got := confSameListener(tc.a, tc.b); got != tc.same {
			t.Errorf("confSameListener(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"listen", "peer_listen", "admin_listen", "data_dir", "datacenter"}
	for in, want := range map[string]string{
		"lisen": "listen", "peer-listen": "peer_listen", "datacentre": "datacenter", "DATA_DIR": "data_dir",
		"dc": "datacenter", "stats_listen": "admin_listen",
	} {
		if got := confSuggest(in, known); !strings.Contains(got, `"`+want+`"`) {
			t.Errorf("confSuggest(%q) = %q, want %q", in, got, want)
		}
	}
	if got := confSuggest("qqqqqqqqq", known); strings.Contains(got, "did you mean") {
		t.Errorf("far key suggested: %q", got)
	}
	if confEditDistance("kitten", "sitting") != 3 || confEditDistance("", "abc") != 3 || confEditDistance("a", "a") != 0 {
		t.Error("edit distance")
	}
}

func TestDynomiteServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:22122:1": "127.0.0.1:22122", "redis.local:6379:10 main": "redis.local:6379",
		"10.0.0.1:6379": "10.0.0.1:6379", "[::1]:6379:1": "[::1]:6379",
	} {
		if got, err := confDynoServer(in); err != nil || got != want {
			t.Errorf("confDynoServer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/tmp/r.sock:1", "redis", ":6379:1"} {
		if got, err := confDynoServer(in); err == nil {
			t.Errorf("confDynoServer(%q) = %q, want an error", in, got)
		}
	}
}

func TestProcsFor(t *testing.T) {
	for _, tc := range []struct{ procs, cpus, want int }{
		{0, 1, 1}, {0, 2, 1}, {0, 3, 1}, {0, 8, 4}, {3, 2, 3}, {1, 64, 1},
	} {
		if got := ProcsFor(tc.procs, tc.cpus); got != tc.want {
			t.Errorf("ProcsFor(%d, %d) = %d, want %d", tc.procs, tc.cpus, got, tc.want)
		}
	}
}
