package node

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// ListenNone as listen turns the plaintext client port off: clients connect to tls_listen.
const ListenNone = "none"

// The client user roles.
const (
	RoleReadWrite = "read-write"
	RoleReadOnly  = "read-only"
)

// UserConfig is one client user of the node file's users list. Exactly one of Password,
// PasswordFile and PasswordSHA256 is set.
type UserConfig struct {
	// Name is the user's AUTH name.
	Name string `yaml:"name"`
	// Password is the clear password.
	Password string `yaml:"password"`
	// PasswordFile is a file whose content (trailing newline dropped) is the password.
	PasswordFile string `yaml:"password_file"`
	// PasswordSHA256 is the password's SHA-256 in hex, as Redis ACL's "#<hash>" (a leading '#'
	// is accepted): the file then holds no password.
	PasswordSHA256 string `yaml:"password_sha256"`
	// Role is read-write (default) or read-only.
	Role string `yaml:"role"`
	// KeyPrefix confines the user to keys and channels starting with it.
	KeyPrefix string `yaml:"key_prefix"`
	// Scripts lets a prefixed user run scripts (their declared keys are checked; their bodies
	// are not).
	Scripts bool `yaml:"scripts"`
}

var confUserFields = []confField[UserConfig]{
	{"name", confStr(func(u *UserConfig) *string { return &u.Name })},
	{"password", confStr(func(u *UserConfig) *string { return &u.Password })},
	{"password_file", confStr(func(u *UserConfig) *string { return &u.PasswordFile })},
	{"password_sha256", confStr(func(u *UserConfig) *string { return &u.PasswordSHA256 })},
	{"role", confStr(func(u *UserConfig) *string { return &u.Role })},
	{"key_prefix", confStr(func(u *UserConfig) *string { return &u.KeyPrefix })},
	{"scripts", func(_ *confFile, u *UserConfig, _ string, n *yaml.Node) (err error) {
		u.Scripts, err = confBool(n)
		return err
	}},
}

func confUsers(f *confFile, c *Config, key string, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("expected a list of users (- name: app), got %s", confShape(n))
	}
	c.Users = make([]UserConfig, len(n.Content))
	for i, item := range n.Content {
		item = confResolve(item)
		k := fmt.Sprintf("%s[%d]", key, i)
		f.lines[k] = item.Line
		if item.Kind != yaml.MappingNode {
			f.fail(item.Line, k, "expected a user (name:, password:, role:), got %s", confShape(item))
			continue
		}
		confDecodeMapping(f, &c.Users[i], item, confUserFields, &k)
	}
	return nil
}

// validateClients checks the client port's TLS keys and the users.
func (c *Config) validateClients(bad func(key, format string, a ...any)) {
	if c.Listen == ListenNone && c.TLSListen == "" {
		bad("listen", "is %q but tls_listen is not set: clients would have no port", ListenNone)
	}
	tlsFiles := c.ClientTLSCertFile != "" || c.ClientTLSKeyFile != ""
	switch {
	case c.TLSListen != "" && c.ClientTLSCertFile == "":
		bad("client_tls_cert_file", "is required when tls_listen is set")
	case c.TLSListen == "" && tlsFiles:
		bad("tls_listen", "is required when client_tls_cert_file is set: the address clients reach over TLS")
	}
	if c.ClientTLSCertFile != "" && c.ClientTLSKeyFile == "" {
		bad("client_tls_key_file", "is required when client_tls_cert_file is set")
	}
	switch a := strings.ToLower(c.ClientTLSAuth); a {
	case "", "none":
		c.ClientTLSAuth = a
	case "optional", "required":
		c.ClientTLSAuth = a
		if c.ClientTLSCAFile == "" {
			bad("client_tls_ca_file", "is required when client_tls_auth is %s: the CA client certificates must chain to", a)
		}
	default:
		bad("client_tls_auth", "%q is not none, optional or required", c.ClientTLSAuth)
	}
	seen := map[string]int{}
	for i := range c.Users {
		u := &c.Users[i]
		key := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			bad(key+".name", "is required")
		case strings.ContainsAny(u.Name, " \t\r\n"):
			bad(key+".name", "%q may not hold spaces", u.Name)
		default:
			if j, ok := seen[u.Name]; ok {
				bad(key+".name", "user %s is also users[%d]", u.Name, j)
			}
			seen[u.Name] = i
		}
		if u.Name == "default" && c.Password != "" {
			bad(key+".name", "a user named default and password are both set: password is the default user's; keep one")
		}
		n := 0
		for _, v := range []string{u.Password, u.PasswordFile, u.PasswordSHA256} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			bad(key, "needs exactly one of password, password_file and password_sha256")
		}
		if u.PasswordSHA256 != "" {
			if _, err := parseSHA256(u.PasswordSHA256); err != nil {
				bad(key+".password_sha256", "%v", err)
			}
		}
		switch r := strings.ToLower(u.Role); r {
		case "", RoleReadWrite, "readwrite", "rw":
			u.Role = RoleReadWrite
		case RoleReadOnly, "readonly", "ro":
			u.Role = RoleReadOnly
		default:
			bad(key+".role", "%q is not read-write or read-only", u.Role)
		}
		if u.KeyPrefix != "" && strings.ContainsAny(u.KeyPrefix, "*?[]\\") {
			bad(key+".key_prefix", "%q may not hold the glob characters * ? [ ] \\", u.KeyPrefix)
		}
		if strings.HasPrefix(u.KeyPrefix, "__redraft:") {
			bad(key+".key_prefix", "%q is inside redraft's reserved prefix __redraft:", u.KeyPrefix)
		}
	}
}

func parseSHA256(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "#"))
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("is not a SHA-256 in hex (64 hex digits, as 'echo -n PASS | sha256sum' prints)")
	}
	copy(h[:], b)
	return h, nil
}

// PasswordHash returns the SHA-256 of the user's password, reading password_file if that is
// how the password is given. Errors name the user and the file, never the password.
func (u UserConfig) PasswordHash() ([32]byte, error) {
	switch {
	case u.PasswordSHA256 != "":
		h, err := parseSHA256(u.PasswordSHA256)
		if err != nil {
			return h, fmt.Errorf("user %s: password_sha256 %v", u.Name, err)
		}
		return h, nil
	case u.PasswordFile != "":
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return [32]byte{}, fmt.Errorf("user %s: password_file: %w", u.Name, err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return [32]byte{}, fmt.Errorf("user %s: password_file %s is empty", u.Name, u.PasswordFile)
		}
		return sha256.Sum256([]byte(p)), nil
	default:
		return sha256.Sum256([]byte(u.Password)), nil
	}
}

// ClientTLS builds the TLS configuration of tls_listen: nil when it is not set.
func ClientTLS(cfg Config) (*tls.Config, error) {
	if cfg.TLSListen == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.ClientTLSCertFile, cfg.ClientTLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("client_tls_cert_file/client_tls_key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientTLSCAFile != "" {
		pool, err := loadCAPool(cfg.ClientTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_tls_ca_file: %w", err)
		}
		tc.ClientCAs = pool
	}
	switch cfg.ClientTLSAuth {
	case "required":
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	case "optional":
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
