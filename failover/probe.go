package failover

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
)

// Info is what one INFO (sections server, replication, persistence, memory, stats, keyspace)
// says about a server.
type Info struct {
	// Role is "master" or "slave", as Redis says.
	Role string
	// RunID changes when the process restarts.
	RunID string
	// MasterAddr is the master a replica follows (host:port).
	MasterAddr string
	// LinkUp is a replica's master_link_status:up.
	LinkUp bool
	// LinkDownSec is master_link_down_since_seconds of a replica whose link is down (-1 unknown).
	LinkDownSec int64
	// Offset is a replica's slave_repl_offset (what it has processed), a master's
	// master_repl_offset (what it has produced).
	Offset int64
	// Loading is set while the server loads its data set.
	Loading bool
	// Syncing is set while a replica takes a full copy from its master.
	Syncing bool
	// UsedMemory is used_memory (bytes), OpsPerSec instantaneous_ops_per_sec, and Keys the
	// keys of every database: for the dashboard and the status.
	UsedMemory, OpsPerSec, Keys int64
	// Policy is maxmemory_policy (noeviction, allkeys-lru...): with several DCs the watcher
	// keeps it noeviction (policy.go).
	Policy string
}

// parseInfo reads the fields Info holds from an INFO reply.
func parseInfo(s string) Info {
	in := Info{LinkDownSec: -1}
	var host, port string
	var master, slave int64
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "role":
			in.Role = v
		case "run_id":
			in.RunID = v
		case "master_host":
			host = v
		case "master_port":
			port = v
		case "master_link_status":
			in.LinkUp = v == "up"
		case "master_link_down_since_seconds":
			in.LinkDownSec, _ = strconv.ParseInt(v, 10, 64)
		case "slave_repl_offset":
			slave, _ = strconv.ParseInt(v, 10, 64)
		case "master_repl_offset":
			master, _ = strconv.ParseInt(v, 10, 64)
		case "loading":
			in.Loading = v == "1"
		case "master_sync_in_progress":
			in.Syncing = v == "1"
		case "used_memory":
			in.UsedMemory, _ = strconv.ParseInt(v, 10, 64)
		case "instantaneous_ops_per_sec":
			in.OpsPerSec, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory_policy":
			in.Policy = v
		default:
			// db0:keys=5,expires=0,avg_ttl=0
			if strings.HasPrefix(k, "db") {
				if n, ok := strings.CutPrefix(v, "keys="); ok {
					n, _, _ = strings.Cut(n, ",")
					keys, _ := strconv.ParseInt(n, 10, 64)
					in.Keys += keys
				}
			}
		}
	}
	if host != "" {
		in.MasterAddr = net.JoinHostPort(host, port)
	}
	in.Offset = master
	if in.Role == "slave" {
		in.Offset = slave
	}
	return in
}

// admins holds one small go-redis client per server, authenticated as the group's admin.
type admins struct {
	timeout time.Duration
	mu      sync.Mutex
	clients map[adminKey]*redis.Client
}

type adminKey struct{ addr, user, password string }

// admin returns the client for a server of g with the group's admin credentials (its user and
// password, backendacl's Access.Admin; the restricted users may not run REPLICAOF). It is the
// one place that decides how the watcher authenticates its commands (INFO, REPLICAOF, CONFIG
// SET masterauth, CLIENT PAUSE) on a backend.
func (a *admins) admin(g *fsm.Group, addr string) *redis.Client {
	cr := backendacl.ForGroup(g).Admin
	k := adminKey{addr, cr.User, cr.Password}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.clients[k]; c != nil {
		return c
	}
	if a.clients == nil {
		a.clients = map[adminKey]*redis.Client{}
	}
	c := redis.NewClient(&redis.Options{
		Addr: addr, Username: cr.User, Password: cr.Password, Protocol: 2, DisableIdentity: true,
		DialTimeout: a.timeout, ReadTimeout: a.timeout, WriteTimeout: a.timeout,
		PoolSize: 2, MaxRetries: -1, DialerRetries: 1,
	})
	a.clients[k] = c
	return c
}

// forget closes the clients of servers not in keep.
func (a *admins) forget(keep map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.clients {
		if !keep[k.addr] {
			_ = c.Close()
			delete(a.clients, k)
		}
	}
}

func (a *admins) close() { a.forget(nil) }

// info asks one server for its role, link and offsets.
func (a *admins) info(ctx context.Context, g *fsm.Group, addr string) (Info, error) {
	s, err := a.admin(g, addr).Info(ctx, "server", "replication", "persistence", "memory", "stats", "keyspace").Result()
	if err != nil {
		return Info{}, err
	}
	in := parseInfo(s)
	if in.Role == "" {
		return in, fmt.Errorf("INFO of %s has no role", addr)
	}
	return in, nil
}

// replicaOf makes addr a replica of master ("" promotes it: REPLICAOF NO ONE). A replica
// authenticates to its master with the group's admin credentials (masteruser, masterauth), set
// first: an old master started without them could not follow the new one.
func (a *admins) replicaOf(ctx context.Context, g *fsm.Group, addr, master string) error {
	c := a.admin(g, addr)
	if master == "" {
		return c.Do(ctx, "REPLICAOF", "NO", "ONE").Err()
	}
	host, port, err := net.SplitHostPort(master)
	if err != nil {
		return err
	}
	if cr := backendacl.ForGroup(g).Admin; cr.Password != "" {
		if err := c.Do(ctx, "CONFIG", "SET", "masterauth", cr.Password).Err(); err != nil {
			return fmt.Errorf("CONFIG SET masterauth: %w", err)
		}
		if cr.User != "" {
			if err := c.Do(ctx, "CONFIG", "SET", "masteruser", cr.User).Err(); err != nil {
				return fmt.Errorf("CONFIG SET masteruser: %w", err)
			}
		}
	}
	return c.Do(ctx, "REPLICAOF", host, port).Err()
}
