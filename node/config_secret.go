package node

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
)

// minSecretLen is the shortest cluster_secret or admin_token accepted: 16 bytes, so that a
// guess is hopeless even at the admin port's request rate.
const minSecretLen = 16

// validateSecurity checks the admin and peer secrets and the admin TLS files.
func (c *Config) validateSecurity(bad func(key, format string, a ...any)) {
	for _, s := range []struct{ key, v, file string }{
		{"cluster_secret", c.ClusterSecret, c.ClusterSecretFile},
		{"admin_token", c.AdminToken, c.AdminTokenFile},
	} {
		if s.v != "" && s.file != "" {
			bad(s.key+"_file", "is set and so is %s: give one of the two", s.key)
		}
		if s.v != "" && len(s.v) < minSecretLen {
			bad(s.key, "is shorter than %d bytes: use a long random one (openssl rand -hex 32)", minSecretLen)
		}
	}
	if c.AdminTLSCertFile != "" && c.AdminTLSKeyFile == "" {
		bad("admin_tls_key_file", "is required when admin_tls_cert_file is set")
	}
	if c.AdminTLSKeyFile != "" && c.AdminTLSCertFile == "" {
		bad("admin_tls_cert_file", "is required when admin_tls_key_file is set")
	}
}

// loadSecretFiles reads cluster_secret_file and admin_token_file into ClusterSecret and
// AdminToken (surrounding white space dropped). Errors name the key and the file, never
// what is in it.
func (c *Config) loadSecretFiles() error {
	for _, s := range []struct {
		key, file string
		dst       *string
	}{
		{"cluster_secret_file", c.ClusterSecretFile, &c.ClusterSecret},
		{"admin_token_file", c.AdminTokenFile, &c.AdminToken},
	} {
		if s.file == "" {
			continue
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return fmt.Errorf("%s: %w", s.key, err)
		}
		v := strings.TrimSpace(string(b))
		if len(v) < minSecretLen {
			return fmt.Errorf("%s: %s holds fewer than %d bytes: put a long random secret in it (openssl rand -hex 32 > %s)", s.key, s.file, minSecretLen, s.file)
		}
		*s.dst = v
	}
	return nil
}

// SecretState is how answers, logs and errors show a secret: "set" or "unset", never the value.
func SecretState(v string) string {
	if v == "" {
		return "unset"
	}
	return "set"
}

// isSecretKey reports whether a config key holds a secret value (not a file name).
func isSecretKey(key string) bool {
	if strings.HasSuffix(key, "_file") {
		return false
	}
	for _, w := range []string{"password", "secret", "token", "pass"} {
		if key == w || strings.HasSuffix(key, "_"+w) || strings.HasPrefix(key, w+"_") {
			return true
		}
	}
	return false
}

// Redacted returns a copy of c with every secret (the client password, the groups' backend
// passwords, the admin token, the cluster secret, and any secret key added later) replaced by
// "set" when it has a value. It is what String and LogValue show.
func (c Config) Redacted() Config {
	v := reflect.ValueOf(&c).Elem()
	redactValue(v)
	return c
}

// redactValue replaces, in place, the string fields whose yaml key names a secret, looking
// into nested structs, pointers and slices (groups, users).
func redactValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			redactValue(v.Elem())
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		// Copy first: the slice's array is shared with the original config.
		cp := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(cp, v)
		v.Set(cp)
		for i := 0; i < v.Len(); i++ {
			redactValue(v.Index(i))
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := v.Field(i)
			if !t.Field(i).IsExported() {
				continue
			}
			key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if f.Kind() == reflect.String && isSecretKey(key) {
				if f.String() != "" {
					f.SetString("set")
				}
				continue
			}
			redactValue(f)
		}
	}
}

// String renders the configuration with its secrets shown as "set" (fmt's %v and %+v use it).
func (c Config) String() string {
	type plain Config // no methods: no recursion
	return fmt.Sprintf("%+v", plain(c.Redacted()))
}

// GoString is String for %#v.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog show the configuration with its secrets shown as "set".
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// String shows a group from the config with its password as "set" or "unset".
func (g GroupConfig) String() string {
	return fmt.Sprintf("{ID:%s Master:%s Replicas:%v Password:%s}", g.ID, g.Master, g.Replicas, SecretState(g.Password))
}

// GoString is String for %#v.
func (g GroupConfig) GoString() string { return g.String() }
