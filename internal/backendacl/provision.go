package backendacl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrWrongPass is wrapped by errors of an AUTH that Redis refused (the user is missing,
// disabled or has another password).
var ErrWrongPass = errors.New("WRONGPASS")

// Provision creates (or resets) both users on the server at addr with the admin credentials.
// ACL users are not replicated, so every server of a group needs it: redraft calls it at
// group add for each server, and again whenever AUTH as one of the users is refused (a
// restarted server, a replica that became master). The error says what to fix and never
// contains a password.
func (a Access) Provision(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Username: a.Admin.User, Password: a.Admin.Password,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1, DialerRetries: 1,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		ContextTimeoutEnabled: true})
	defer c.Close()
	cmds := make([]*redis.StatusCmd, 2)
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds[0] = p.ACLSetUser(ctx, ClientUser, a.ClientRules()...)
		cmds[1] = p.ACLSetUser(ctx, InternalUser, a.InternalRules()...)
		return nil
	})
	if err != nil {
		return a.explain(addr, err)
	}
	return nil
}

// explain turns a provisioning failure into an error that names the fix.
func (a Access) explain(addr string, err error) error {
	admin := a.Admin.User
	if admin == "" {
		admin = "default"
	}
	msg := err.Error()
	where := fmt.Sprintf("group %s, server %s", a.Group, addr)
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"), strings.Contains(msg, "AUTH <password> called without any password"):
		return fmt.Errorf("backend ACL: %s: the group's admin credentials (user %q) were refused (%s): set the group's user and password to an account that may run ACL SETUSER (docs/security.md, \"Backends\")", where, admin, firstLine(msg))
	case strings.HasPrefix(msg, "NOPERM"):
		return fmt.Errorf("backend ACL: %s: user %q may not create redraft's users (%s): give the group an admin user that may run ACL SETUSER (docs/security.md, \"Backends\")", where, admin, firstLine(msg))
	case strings.Contains(msg, "unknown command") || strings.Contains(msg, "unknown subcommand"):
		return fmt.Errorf("backend ACL: %s: the server has no ACL SETUSER (%s): redraft needs Redis 6 or later", where, firstLine(msg))
	}
	return fmt.Errorf("backend ACL: %s: creating redraft's users: %w", where, err)
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// ensureMu serialises Ensure per server, so a burst of dials that all find the users missing
// creates them once.
var ensureMu sync.Map // addr -> *sync.Mutex

// Ensure makes AUTH as creds work on addr: it probes with AUTH and, when Redis answers
// WRONGPASS, provisions both users and probes again.
func (a Access) Ensure(ctx context.Context, addr string, creds Creds, timeout time.Duration) error {
	mu, _ := ensureMu.LoadOrStore(addr, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	err := probe(ctx, addr, creds, timeout)
	if !errors.Is(err, ErrWrongPass) {
		return err
	}
	if err := a.Provision(ctx, addr); err != nil {
		return err
	}
	return probe(ctx, addr, creds, timeout)
}

// probe dials addr and authenticates as creds.
func probe(ctx context.Context, addr string, creds Creds, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	return Auth(nc, creds, timeout)
}

// Auth sends AUTH user password on nc and reads the reply; a refusal wraps ErrWrongPass.
func Auth(nc net.Conn, creds Creds, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	_ = nc.SetDeadline(time.Now().Add(timeout))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write(AuthCommand(creds)); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(nc, 256).ReadString('\n')
	if err != nil {
		return err
	}
	return AuthReply(creds, strings.TrimRight(line, "\r\n"))
}

// AuthCommand is AUTH user password in RESP.
func AuthCommand(creds Creds) []byte {
	b := []byte("*3\r\n$4\r\nAUTH\r\n")
	for _, s := range []string{creds.User, creds.Password} {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, "\r\n"...)
		b = append(b, s...)
		b = append(b, "\r\n"...)
	}
	return b
}

// AuthReply interprets the reply line to AUTH as creds (without CRLF): nil for +OK, an error
// wrapping ErrWrongPass for a refusal, another error otherwise.
func AuthReply(creds Creds, line string) error {
	switch {
	case line == "+OK":
		return nil
	case strings.HasPrefix(line, "-WRONGPASS"):
		return fmt.Errorf("%w: AUTH as %s refused", ErrWrongPass, creds.User)
	case strings.HasPrefix(line, "-"):
		return fmt.Errorf("AUTH as %s: %s", creds.User, line[1:])
	}
	return fmt.Errorf("AUTH as %s: unexpected reply %q", creds.User, line)
}

// Dialer returns a go-redis Dialer that makes sure creds work on the server before go-redis
// authenticates with them: it probes AUTH on the new connection and, when refused, creates
// the users (Ensure). It costs one round trip per new pooled connection.
func (a Access) Dialer(creds Creds, timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := Auth(nc, creds, timeout); errors.Is(err, ErrWrongPass) {
			if err := a.Ensure(ctx, addr, creds, timeout); err != nil {
				_ = nc.Close()
				return nil, err
			}
		} else if err != nil {
			_ = nc.Close()
			return nil, err
		}
		return nc, nil
	}
}

// InternalOptions fills o's credentials and dialer for the internal user (o.Addr set).
func (a Access) InternalOptions(o *redis.Options) *redis.Options {
	cr := a.Internal()
	o.Username, o.Password = cr.User, cr.Password
	to := o.DialTimeout
	if to <= 0 {
		to = 5 * time.Second
	}
	o.Dialer = a.Dialer(cr, to)
	return o
}

// Prepare provisions both users on every server and checks that each can authenticate. A
// server that refuses (wrong admin credentials, an admin user without ACL rights, no ACL
// support) fails it with an error naming the server and the fix; a server that cannot be
// reached is only listed in unreachable, since the users are created again whenever redraft
// connects (Ensure). Run at group add and change.
func (a Access) Prepare(ctx context.Context, addrs []string) (unreachable []string, err error) {
	var errs []error
	for _, addr := range addrs {
		err := a.Provision(ctx, addr)
		if err == nil {
			for _, cr := range []Creds{a.Client(), a.Internal()} {
				if err = probe(ctx, addr, cr, 5*time.Second); err != nil {
					err = fmt.Errorf("backend ACL: group %s, server %s: %w", a.Group, addr, err)
					break
				}
			}
		}
		var ne net.Error
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" || errors.As(err, &ne) && ne.Timeout() {
			unreachable = append(unreachable, addr)
			continue
		}
		errs = append(errs, err)
	}
	return unreachable, errors.Join(errs...)
}
