package router

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// DefaultUser is the name of the user a session is when it does not name one: AUTH with the
// password alone, or no AUTH when the default user needs no password.
const DefaultUser = "default"

// User is one client user, as Redis 6 ACL users are seen by clients: AUTH user pass,
// HELLO 2 AUTH user pass, ACL WHOAMI.
type User struct {
	// Name is what AUTH and HELLO name the user by.
	Name string
	// PasswordSHA256 is the SHA-256 of the user's password (Redis ACL's "#<hash>"): the node
	// keeps no clear password.
	PasswordSHA256 [32]byte
	// NoPass accepts any password (the default user of a node without a password).
	NoPass bool
	// ReadOnly refuses commands that may change data, publish, or load and run writing scripts.
	ReadOnly bool
	// KeyPrefix, when set, confines the user to keys (and pub/sub channels) starting with it.
	KeyPrefix string
	// Scripts lets a user with a KeyPrefix run scripts (EVAL, EVALSHA, FCALL and SCRIPT
	// LOAD); their declared keys are checked, but a script body can reach keys it does not
	// declare, so only trusted script code should run under such a user.
	Scripts bool

	// restricted: any check applies (ReadOnly or KeyPrefix); the request path tests only this.
	restricted bool
}

// HashPassword returns the SHA-256 of a clear password, for User.PasswordSHA256.
func HashPassword(pass string) [32]byte { return sha256.Sum256([]byte(pass)) }

// userTable holds a server's users by name.
type userTable struct {
	byName map[string]*User
	// def is the default user, nil when it is disabled (users are configured, no password).
	def *User
}

// newUserTable builds the users of cfg: cfg.Users, and the default user from cfg.Password
// unless cfg.Users names one. Without a password and without users the default user needs no
// password, as in redis-server; with users and no password it is disabled, so every session
// must AUTH as one of them.
func newUserTable(cfg Config) *userTable {
	t := &userTable{byName: map[string]*User{}}
	for i := range cfg.Users {
		u := cfg.Users[i]
		u.restricted = u.ReadOnly || u.KeyPrefix != ""
		t.byName[u.Name] = &u
	}
	if d, ok := t.byName[DefaultUser]; ok {
		t.def = d
		return t
	}
	switch {
	case cfg.Password != "":
		t.def = &User{Name: DefaultUser, PasswordSHA256: HashPassword(cfg.Password)}
	case len(cfg.Users) == 0:
		t.def = &User{Name: DefaultUser, NoPass: true}
	default:
		return t
	}
	t.byName[DefaultUser] = t.def
	return t
}

// initial is the user a new session is before AUTH: the default user when it needs no
// password, else nil (the session must authenticate).
func (t *userTable) initial() *User {
	if t.def != nil && t.def.NoPass {
		return t.def
	}
	return nil
}

// dummyHash is compared against when the user does not exist, so a wrong user name costs the
// same time as a wrong password.
var dummyHash = HashPassword("redraft: no such user")

// authenticate returns the user name and pass identify (name nil: the default user), or
// errBadPass. Passwords are compared as SHA-256 digests in constant time.
func (t *userTable) authenticate(name, pass []byte) (*User, error) {
	if name == nil {
		if t.def == nil {
			return nil, errBadPass
		}
		if t.def.NoPass {
			return nil, errNoPassSet
		}
		name = []byte(DefaultUser)
	}
	u := t.byName[string(name)]
	want := &dummyHash
	if u != nil {
		want = &u.PasswordSHA256
	}
	got := sha256.Sum256(pass)
	ok := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	if u == nil {
		return nil, errBadPass
	}
	if u.NoPass {
		return u, nil
	}
	if !ok {
		return nil, errBadPass
	}
	return u, nil
}

// ValidKeyPrefix reports why a key prefix cannot be used, or "": it must not be empty and
// must hold no glob character, so that KEYS, SCAN and PSUBSCRIBE patterns can be checked
// against it literally.
func ValidKeyPrefix(p string) string {
	if p == "" {
		return "is empty"
	}
	if strings.ContainsAny(p, "*?[]\\") {
		return "may not hold the glob characters * ? [ ] \\"
	}
	if strings.HasPrefix(p, reservedPrefix) {
		return "is inside redraft's reserved prefix " + reservedPrefix
	}
	return ""
}
