package node

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redraft/redraft/internal/testcert"
)

func TestLoadConfigUsersAndClientTLS(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "app.pass")
	if err := os.WriteFile(pwFile, []byte("filepw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("hashedpw"))
	path := writeConf(t, `id: n1
listen: none
tls_listen: 127.0.0.1:6390
client_tls_cert_file: /etc/redraft/client.crt
client_tls_key_file: /etc/redraft/client.key
client_tls_ca_file: /etc/redraft/ca.crt
client_tls_auth: Required
users:
  - name: app
    password_file: `+pwFile+`
    key_prefix: "app:"
    scripts: true
  - name: reports
    password_sha256: "#`+hex.EncodeToString(sum[:])+`"
    role: read-only
  - name: default
    password: clear
    role: ro
`)
	cfg, warns, err := LoadConfig(path)
	if err != nil || len(warns) > 0 {
		t.Fatal(err, warns)
	}
	if cfg.Listen != ListenNone || cfg.TLSListen != "127.0.0.1:6390" || cfg.ClientTLSAuth != "required" || cfg.ClientTLSCAFile != "/etc/redraft/ca.crt" {
		t.Fatalf("client port keys: %+v", cfg)
	}
	want := []UserConfig{
		{Name: "app", PasswordFile: pwFile, Role: RoleReadWrite, KeyPrefix: "app:", Scripts: true},
		{Name: "reports", PasswordSHA256: "#" + hex.EncodeToString(sum[:]), Role: RoleReadOnly},
		{Name: "default", Password: "clear", Role: RoleReadOnly},
	}
	if len(cfg.Users) != len(want) {
		t.Fatalf("users: %+v", cfg.Users)
	}
	for i, u := range cfg.Users {
		if u != want[i] {
			t.Fatalf("users[%d] = %+v, want %+v", i, u, want[i])
		}
	}
	for i, pw := range []string{"filepw", "hashedpw", "clear"} {
		h, err := cfg.Users[i].PasswordHash()
		if err != nil || h != sha256.Sum256([]byte(pw)) {
			t.Fatalf("users[%d] hash: %v", i, err)
		}
	}
	missing := UserConfig{Name: "x", PasswordFile: filepath.Join(dir, "nope")}
	if _, err := missing.PasswordHash(); err == nil || !strings.Contains(err.Error(), "user x: password_file") {
		t.Fatalf("missing password file: %v", err)
	}
}

func TestLoadConfigUsersErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"password: p\nusers:\n  - name: default\n    password: q\n", "a user named default and password are both set"},
		{"users:\n  - name: a\n", "needs exactly one of password, password_file and password_sha256"},
		{"users:\n  - name: a\n    password: p\n    password_file: f\n", "needs exactly one"},
		{"users:\n  - name: a\n    password: p\n  - name: a\n    password: q\n", "user a is also users[0]"},
		{"users:\n  - password: p\n", "users[0].name: is required"},
		{"users:\n  - name: a\n    password_sha256: abc\n", "is not a SHA-256 in hex"},
		{"users:\n  - name: a\n    password: p\n    role: admin\n", `"admin" is not read-write or read-only`},
		{"users:\n  - name: a\n    password: p\n    key_prefix: 'a*'\n", "may not hold the glob characters"},
		{"users:\n  - name: a\n    password: p\n    key_prefix: '__redraft:x'\n", "reserved prefix"},
		{"users:\n  - name: a\n    pasword: p\n", `did you mean "password"?`},
		{"listen: none\n", "tls_listen is not set"},
		{"tls_listen: 127.0.0.1:6390\n", "client_tls_cert_file: is required when tls_listen is set"},
		{"client_tls_cert_file: c\nclient_tls_key_file: k\n", "tls_listen: is required"},
		{"tls_listen: 127.0.0.1:6390\nclient_tls_cert_file: c\n", "client_tls_key_file: is required"},
		{"tls_listen: 127.0.0.1:6390\nclient_tls_cert_file: c\nclient_tls_key_file: k\nclient_tls_auth: optional\n", "client_tls_ca_file: is required"},
		{"tls_listen: 127.0.0.1:6390\nclient_tls_cert_file: c\nclient_tls_key_file: k\nclient_tls_auth: maybe\n", `"maybe" is not none, optional or required`},
		{"tls_listen: 127.0.0.1:6380\nclient_tls_cert_file: c\nclient_tls_key_file: k\n", "is also listen"},
	} {
		_, _, err := LoadConfig(writeConf(t, "id: n1\n"+c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.body, err, c.want)
		}
	}
	// A password never appears in an error about its user.
	_, _, err := LoadConfig(writeConf(t, "id: n1\nusers:\n  - name: a\n    password: hunter2\n    password_file: f\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password: %v", err)
	}
	// Nor a user or group written as one value, password and all (until session 47 the error
	// quoted it).
	for _, body := range []string{"users:\n  - shop:hunter2\n", "users: shop:hunter2\n", "groups:\n  - redis://:hunter2@10.0.0.1:6379\n", "groups: hunter2\n"} {
		_, _, err := LoadConfig(writeConf(t, "id: n1\n"+body))
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: error %v", body, err)
		}
	}
}

func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	srv := testcert.New(t, dir, "srv", ca, false)
	base := Config{TLSListen: "127.0.0.1:0", ClientTLSCertFile: srv.CertFile, ClientTLSKeyFile: srv.KeyFile}
	if tc, err := ClientTLS(Config{}); tc != nil || err != nil {
		t.Fatalf("without tls_listen: %v %v", tc, err)
	}
	for auth, want := range map[string]tls.ClientAuthType{"": tls.NoClientCert, "none": tls.NoClientCert,
		"optional": tls.VerifyClientCertIfGiven, "required": tls.RequireAndVerifyClientCert} {
		cfg := base
		cfg.ClientTLSAuth, cfg.ClientTLSCAFile = auth, ca.CertFile
		tc, err := ClientTLS(cfg)
		if err != nil || tc.ClientAuth != want || tc.ClientCAs == nil || len(tc.Certificates) != 1 {
			t.Fatalf("auth %q: %+v %v", auth, tc, err)
		}
	}
	bad := base
	bad.ClientTLSKeyFile = ca.KeyFile
	if _, err := ClientTLS(bad); err == nil || !strings.Contains(err.Error(), "client_tls_cert_file") {
		t.Fatalf("mismatched key: %v", err)
	}
}
