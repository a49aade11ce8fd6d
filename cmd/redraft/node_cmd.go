package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/failover"
	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/node"
	"github.com/redraft/redraft/router"
	"github.com/redraft/redraft/router/xdc"
)

// nodeFlags are the flags of 'node start' and 'node join'; each overrides its config key.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config file (redraft's or a Dynomite node file)"},
		&cli.StringFlag{Name: "id", Usage: "node id (config: id)"},
		&cli.StringFlag{Name: "dc", Usage: "datacenter (config: datacenter)"},
		&cli.StringFlag{Name: "rack", Usage: "rack (config: rack)"},
		&cli.StringFlag{Name: "listen", Usage: "RESP address for clients; none: TLS clients only (config: listen)"},
		&cli.StringFlag{Name: "tls-listen", Usage: "RESP address for TLS clients, beside --listen (config: tls_listen)"},
		&cli.StringFlag{Name: "client-tls-cert-file", Usage: "PEM certificate --tls-listen presents (config: client_tls_cert_file)"},
		&cli.StringFlag{Name: "client-tls-key-file", Usage: "PEM key of that certificate (config: client_tls_key_file)"},
		&cli.StringFlag{Name: "client-tls-ca-file", Usage: "PEM CA client certificates must chain to (config: client_tls_ca_file)"},
		&cli.StringFlag{Name: "client-tls-auth", Usage: "client certificates: none, optional or required (config: client_tls_auth)"},
		&cli.StringFlag{Name: "peer-listen", Usage: "Raft and node RPC address (config: peer_listen)"},
		&cli.StringFlag{Name: "admin-listen", Usage: "admin HTTP address (config: admin_listen)"},
		&cli.StringFlag{Name: "advertise", Usage: "host other nodes use to reach this one (config: advertise)"},
		&cli.StringFlag{Name: "data-dir", Usage: "Raft data directory (config: data_dir)"},
		&cli.StringSliceFlag{Name: "seed", Usage: "peer address of an existing member, HOST:PORT (config: seeds); repeat or comma-separate"},
		&cli.StringFlag{Name: "tokens", Usage: "comma-separated ring tokens (config: tokens)"},
		&cli.IntFlag{Name: "max-voters", Usage: "Raft voters at most (config: max_voters)"},
		&cli.IntFlag{Name: "procs", Usage: "threads running Go code at once; 0: half the CPUs (config: procs)"},
		&cli.StringFlag{Name: "password", EnvVars: []string{"REDRAFT_PASSWORD"}, DefaultText: "unset", Usage: "client AUTH password (config: password)"},
		&cli.StringFlag{Name: "cluster-secret", EnvVars: []string{"REDRAFT_CLUSTER_SECRET"}, DefaultText: "unset", Usage: "secret every node proves it holds on each peer connection, the same on every node (config: cluster_secret)"},
		&cli.StringFlag{Name: "cluster-secret-file", Usage: "file holding the cluster secret (config: cluster_secret_file)"},
		&cli.StringFlag{Name: "admin-token", EnvVars: []string{"REDRAFT_ADMIN_TOKEN"}, DefaultText: "unset", Usage: "bearer token the admin API asks for (config: admin_token)"},
		&cli.StringFlag{Name: "admin-token-file", Usage: "file holding the admin token (config: admin_token_file)"},
		&cli.StringFlag{Name: "admin-tls-cert-file", Usage: "PEM certificate: HTTPS on the admin port (config: admin_tls_cert_file)"},
		&cli.StringFlag{Name: "admin-tls-key-file", Usage: "PEM key of the admin certificate (config: admin_tls_key_file)"},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (config: log_level)"},
		&cli.StringFlag{Name: "tls-cert-file", Usage: "PEM certificate: TLS on the peer port (config: tls_cert_file)"},
		&cli.StringFlag{Name: "tls-key-file", Usage: "PEM key of the certificate (config: tls_key_file)"},
		&cli.StringFlag{Name: "tls-ca-file", Usage: "PEM cluster CA peers must chain to (config: tls_ca_file)"},
	}
}

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "run a node, add nodes to the cluster, remove and list them",
		Description: `Example:
   redraft node start --id n1 --dc dc1 --data-dir data/n1
   redraft node join --seed 127.0.0.1:7380 --id n2 --dc dc1 --listen 127.0.0.1:6381 --peer-listen 127.0.0.1:7381 --admin-listen 127.0.0.1:8381
   redraft node list`,
		Subcommands: []*cli.Command{
			{
				Name:  "start",
				Usage: "run a node; without seeds and with an empty data dir it bootstraps a new cluster",
				UsageText: `redraft node start --id n1 --dc dc1 --listen 127.0.0.1:6380 --peer-listen 127.0.0.1:7380 --admin-listen 127.0.0.1:8380 --data-dir data/n1
   redraft node start --config n1.yaml`,
				Flags:  nodeFlags(),
				Action: func(c *cli.Context) error { return runNode(c, false) },
			},
			{
				Name:      "join",
				Usage:     "run a node that joins an existing cluster through a seed (the same command serves every restart)",
				UsageText: `redraft node join --seed 127.0.0.1:7380 --id n2 --dc dc1 --listen 127.0.0.1:6381 --peer-listen 127.0.0.1:7381 --admin-listen 127.0.0.1:8381 --data-dir data/n2`,
				Flags:     nodeFlags(),
				Action:    func(c *cli.Context) error { return runNode(c, true) },
			},
			{
				Name:      "remove",
				Usage:     "take a node out of the cluster; it stops serving",
				UsageText: "redraft --admin 127.0.0.1:8380 node remove n3",
				ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id := c.Args().First()
					if id == "" || c.NArg() != 1 {
						return fmt.Errorf("give one node id, e.g. 'redraft node remove n3' ('redraft node list' shows them)")
					}
					cx, cancel := ctx(c)
					defer cancel()
					if err := adminClient(c).RemoveNode(cx, id); err != nil {
						return err
					}
					fmt.Printf("node %s removed\n", id)
					return nil
				},
			},
			{
				Name:      "list",
				Usage:     "list the nodes with their Raft role",
				UsageText: "redraft --admin 127.0.0.1:8380 node list [--json]",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					st, err := fetchStatus(c)
					if err != nil {
						return err
					}
					return output(c, st.Members, func() { memberTable(st.Members, st.DCs) })
				},
			},
		},
	}
}

// loadNodeConfig reads --config (if any) with the flags applied over it, then validates.
func loadNodeConfig(c *cli.Context, join bool) (node.Config, error) {
	var cfg node.Config
	if path := c.String("config"); path != "" {
		var warnings []string
		var err error
		cfg, warnings, err = node.LoadConfigWith(path, func(cfg *node.Config) error { return applyFlags(c, cfg) })
		for _, w := range warnings {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
		if err != nil {
			return cfg, err
		}
	} else {
		cfg = node.DefaultConfig()
		if err := applyFlags(c, &cfg); err != nil {
			return cfg, err
		}
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			return cfg, fmt.Errorf("flags: %w", err)
		}
	}
	if join && len(cfg.Seeds) == 0 {
		return cfg, fmt.Errorf("node join needs --seed HOST:PORT (the peer address of any member)")
	}
	return cfg, nil
}

// applyFlags sets the config keys whose flags were given.
func applyFlags(c *cli.Context, cfg *node.Config) error {
	str := map[string]*string{
		"id": &cfg.ID, "dc": &cfg.DC, "rack": &cfg.Rack, "listen": &cfg.Listen, "peer-listen": &cfg.PeerListen,
		"admin-listen": &cfg.AdminListen, "advertise": &cfg.Advertise, "data-dir": &cfg.DataDir,
		"password": &cfg.Password, "log-level": &cfg.LogLevel,
		"tls-cert-file": &cfg.TLSCertFile, "tls-key-file": &cfg.TLSKeyFile, "tls-ca-file": &cfg.TLSCAFile,
		"tls-listen": &cfg.TLSListen, "client-tls-cert-file": &cfg.ClientTLSCertFile,
		"client-tls-key-file": &cfg.ClientTLSKeyFile, "client-tls-ca-file": &cfg.ClientTLSCAFile,
		"client-tls-auth": &cfg.ClientTLSAuth,
		"cluster-secret":  &cfg.ClusterSecret, "cluster-secret-file": &cfg.ClusterSecretFile,
		"admin-token": &cfg.AdminToken, "admin-token-file": &cfg.AdminTokenFile,
		"admin-tls-cert-file": &cfg.AdminTLSCertFile, "admin-tls-key-file": &cfg.AdminTLSKeyFile,
	}
	for name, p := range str {
		// An empty flag or environment variable (an EnvironmentFile's "REDRAFT_PASSWORD=")
		// counts as set for urfave/cli; it must not clear the file's value, a secret above all.
		if c.IsSet(name) && c.String(name) != "" {
			*p = c.String(name)
		}
	}
	// The global --admin-token (the one the CLI sends: 'redraft --admin-token T node start')
	// is the token of this node too when the command was given none of its own; urfave/cli
	// reads only the nearest flag set that defines the name, so it was ignored, and the node
	// started with an open admin API.
	if c.String("admin-token") == "" && cfg.AdminToken == "" && cfg.AdminTokenFile == "" {
		for _, p := range c.Lineage()[1:] {
			if p.IsSet("admin-token") && p.String("admin-token") != "" {
				cfg.AdminToken = p.String("admin-token")
				break
			}
		}
	}
	if c.IsSet("seed") {
		cfg.Seeds = nil
		for _, s := range c.StringSlice("seed") {
			for _, part := range strings.Split(s, ",") {
				if part = strings.TrimSpace(part); part != "" {
					cfg.Seeds = append(cfg.Seeds, part)
				}
			}
		}
	}
	if c.IsSet("max-voters") {
		cfg.MaxVoters = c.Int("max-voters")
	}
	if c.IsSet("procs") {
		cfg.Procs = c.Int("procs")
	}
	if c.IsSet("tokens") {
		cfg.Tokens = nil
		for _, t := range strings.Split(c.String("tokens"), ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(t), 10, 32)
			if err != nil {
				return fmt.Errorf("--tokens: %q is not a 32-bit token", t)
			}
			cfg.Tokens = append(cfg.Tokens, uint32(v))
		}
	}
	return nil
}

// runNode runs a node and its data plane until a signal or its removal.
func runNode(c *cli.Context, join bool) error {
	cfg, err := loadNodeConfig(c, join)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(cfg.LogLevel)}))
	slog.SetDefault(log)
	// go-redis's own pool messages ("failed to dial after N attempts") repeat for every probe
	// of a server that is down (the failover watcher's, the movers'); the callers log what
	// matters, so these go to debug.
	redis.SetLogger(goRedisLog{log})
	setProcs(cfg.Procs, log)

	rcfg, err := routerConfig(cfg)
	if err != nil {
		return err
	}
	lns, err := clientListeners(&cfg)
	if err != nil {
		return err
	}
	ref := &nodeRef{cfg: cfg}
	var repl *xdc.Replicator
	rcfg.AwaitDCs = func(ctx context.Context, db, slot int, group, id string) error {
		timeout := 5 * time.Second
		if d, ok := ctx.Deadline(); ok {
			timeout = time.Until(d)
		}
		return repl.Await(ctx, db, slot, group, id, timeout)
	}
	rcfg.Wrote = func(db, slot int) { repl.Wrote(db, slot) }
	rcfg.Flush = func(ctx context.Context, db int, async bool) error { return repl.Flush(ctx, db, async) }
	rcfg.Logger = log
	rt := router.New(rcfg)
	repl = xdc.New(xdc.Config{Cluster: ref, Peers: ref, Local: rt, FlushGate: rt, Proposer: ref, Logger: log})
	// LeaseWait is RemoveGrace, not LeaseTimeout: a deposed leader acts until it steps down
	// (LeaderLeaseTimeout) and then counts that moment as its last contact, so a node cut off
	// may act for up to RemoveGrace after the cluster moved on.
	watch := failover.New(failover.Config{Cluster: ref, Gate: rt, Logger: log, OnFresh: rt.SetReplicaFresh, LeaseWait: node.RemoveGrace})
	rpcs := map[string]node.RPCFunc{}
	for name, h := range repl.RPC() {
		rpcs[name] = node.RPCFunc(h)
	}
	for name, h := range watch.RPC() {
		rpcs[name] = node.RPCFunc(h)
	}
	maxFormat, err := maxDataFormatFromEnv(log)
	if err != nil {
		return err
	}
	n, err := node.Start(cfg, node.Options{Logger: log, Status: func() any { return rt.Stats() }, RPC: rpcs, MaxDataFormat: maxFormat,
		Replication: func() []node.ReplicationPair {
			pairs := repl.Report().Pairs
			out := make([]node.ReplicationPair, len(pairs))
			for i, p := range pairs {
				out[i] = node.ReplicationPair(p)
			}
			return out
		},
		Servers: watch.View})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return err
	}
	ref.n.Store(n)
	if err := n.Register(repl); err != nil {
		log.Warn("replication metrics not registered", "err", err)
	}
	if err := n.Register(rt); err != nil {
		log.Warn("data plane metrics not registered", "err", err)
	}
	if err := n.Register(rt.ReplicaReadMetrics()); err != nil {
		log.Warn("replica read metrics not registered", "err", err)
	}
	// The node hands over only states it knows are current (node/current.go): the router
	// routes by them, and the coordinator and the replicator read them through ref. The router
	// sees each state before the coordinator acts on it: a freeze is in force in the data plane
	// before this node can vouch for it.
	coord := migrate.NewCoordinator(ref, rt, migrate.MoveJob, log)
	coord.SetReplication(repl)
	n.OnCurrent(func(st *fsm.State, err error) {
		if err != nil {
			rt.Hold(err)
		} else {
			rt.SetState(st)
		}
		coord.Notify(st)
		repl.Notify(st)
		watch.Notify(st)
	})
	coordCtx, stopCoord := context.WithCancel(context.Background())
	defer stopCoord()
	go coord.Run(coordCtx)
	go repl.Run(coordCtx)
	go watch.Run(coordCtx)
	for _, ln := range lns {
		go func() {
			if err := rt.Serve(ln); err != nil {
				log.Error("RESP server stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	log.Info("node running", "id", cfg.ID, "dc", cfg.DC, "listen", cfg.Listen, "tls_listen", cfg.TLSListen,
		"client_tls_auth", cfg.ClientTLSAuth, "users", len(cfg.Users), "peer", n.PeerAddr(), "admin", n.AdminAddr())

	go registerGroups(n, cfg, log)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var exit error
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case <-n.Removed():
		exit = cli.Exit(fmt.Sprintf("redraft: node %s stops: %s", cfg.ID, n.RemovedReason()), 3)
	}
	stopCoord()
	rt.Close()
	n.Close()
	return exit
}

// goRedisLog sends go-redis's internal messages to the node's log at debug level.
type goRedisLog struct{ log *slog.Logger }

// Printf implements go-redis's logger.
func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "part", "go-redis")
}

// nodeRef gives the replicator and the migration coordinator the node, which starts after the
// replicator (the node serves the replicator's calls on its peer port). Its State is the state
// the node acts on (node.Current): empty until the node has caught up, and while it is not
// current, so duties that read it find nothing to do.
type nodeRef struct {
	cfg node.Config
	n   atomic.Pointer[node.Node]
}

func (r *nodeRef) State() *fsm.State {
	if n := r.n.Load(); n != nil {
		return n.Current()
	}
	return fsm.New()
}

func (r *nodeRef) Propose(ctx context.Context, cmd fsm.Command) error {
	n := r.n.Load()
	if n == nil {
		return errors.New("node not started")
	}
	return n.Propose(ctx, cmd)
}

func (r *nodeRef) ID() string { return r.cfg.ID }
func (r *nodeRef) DC() string { return r.cfg.DC }

func (r *nodeRef) CallPeer(ctx context.Context, addr, name string, in, out any) error {
	n := r.n.Load()
	if n == nil {
		return errors.New("node not started")
	}
	return n.CallPeer(ctx, addr, name, in, out)
}

// registerGroups adds the config's groups once the node is ready; an identical group already
// in the state is fine, a different one is reported.
func registerGroups(n *node.Node, cfg node.Config, log *slog.Logger) {
	if len(cfg.Groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		log.Warn("groups from the config not registered", "err", err)
		return
	}
	for _, g := range cfg.Groups {
		want := fsm.Group{ID: g.ID, Master: g.Master, Replicas: g.Replicas, User: g.User, Password: g.Password}
		err := n.PrepareGroup(ctx, &want)
		if err == nil {
			err = n.Propose(ctx, &fsm.AddGroup{DC: cfg.DC, Group: want})
		}
		var fe *fsm.Error
		var re *node.RemoteError
		if errors.As(err, &fe) && fe.Code == "exists" || errors.As(err, &re) && re.Code == "exists" {
			continue
		}
		if err != nil {
			log.Warn("group from the config not registered", "group", g.ID, "err", err)
		}
	}
}

func logLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func routerConfig(cfg node.Config) (router.Config, error) {
	users := make([]router.User, 0, len(cfg.Users))
	for _, u := range cfg.Users {
		h, err := u.PasswordHash()
		if err != nil {
			return router.Config{}, err
		}
		users = append(users, router.User{Name: u.Name, PasswordSHA256: h, ReadOnly: u.Role == node.RoleReadOnly,
			KeyPrefix: u.KeyPrefix, Scripts: u.Scripts})
	}
	rc := router.Config{
		NodeID:           cfg.ID,
		DC:               cfg.DC,
		Rack:             cfg.Rack,
		Password:         cfg.Password,
		Users:            users,
		MaxBulkBytes:     cfg.MaxBulkBytes,
		MaxMultibulk:     cfg.MaxMultibulk,
		BackendTimeout:   time.Duration(cfg.BackendTimeout),
		WriteConsistency: cfg.WriteConsistency,
	}
	if cfg.FlushEnabled != nil {
		// false refuses flushes on this node; true leaves them to the cluster's setting,
		// which the flush's own proposal needs in any case.
		on := *cfg.FlushEnabled
		rc.FlushEnabled = func() bool { return on }
	}
	return rc, nil
}

// clientListeners opens the client ports: listen (unless "none") and tls_listen. Addresses
// with port 0 are replaced by the bound ones.
func clientListeners(cfg *node.Config) ([]net.Listener, error) {
	var lns []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	open := func(key string, addr *string) error {
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", key, *addr, err)
		}
		if _, port, _ := net.SplitHostPort(*addr); port == "0" {
			*addr = ln.Addr().String()
		}
		lns = append(lns, ln)
		return nil
	}
	if cfg.Listen != node.ListenNone {
		if err := open("listen", &cfg.Listen); err != nil {
			return fail(err)
		}
	}
	tc, err := node.ClientTLS(*cfg)
	if err != nil {
		return fail(err)
	}
	if tc != nil {
		if err := open("tls_listen", &cfg.TLSListen); err != nil {
			return fail(err)
		}
		lns[len(lns)-1] = router.NewTLSListener(lns[len(lns)-1], tc)
	}
	return lns, nil
}

// setProcs sets GOMAXPROCS from the procs setting, unless the operator set the GOMAXPROCS
// environment variable, which wins. runtime.GOMAXPROCS(0) before the change is Go's own
// default: the CPUs the process may use, cgroup limits included.
func setProcs(procs int, log *slog.Logger) {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		log.Info("procs from the environment", "GOMAXPROCS", v, "procs", runtime.GOMAXPROCS(0))
		return
	}
	n := node.ProcsFor(procs, runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(n)
	log.Info("procs", "procs", n, "cpus", runtime.NumCPU())
}

// maxDataFormatEnv names the environment variable that holds a node at or below a data format
// (fsm/cmd_format.go): a value from fsm.FirstDataFormat to fsm.LatestDataFormat, registered as
// the highest format the node runs. The cluster's format is raised only to what every member
// runs, so one node with it holds the whole cluster there: a test of an older format, or an
// operator mid-upgrade who keeps a cluster on the format its older builds run until the last
// node is replaced. A format is never lowered: set below the cluster's format, the node does
// not act (node/current.go).
const maxDataFormatEnv = "REDRAFT_MAX_DATA_FORMAT"

// maxDataFormatFromEnv reads maxDataFormatEnv: 0 when unset (the build's latest).
func maxDataFormatFromEnv(log *slog.Logger) (int, error) {
	v := os.Getenv(maxDataFormatEnv)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < fsm.FirstDataFormat || n > fsm.LatestDataFormat {
		return 0, fmt.Errorf("%s=%q: want a data format from %d to %d (this build's latest), or leave it unset",
			maxDataFormatEnv, v, fsm.FirstDataFormat, fsm.LatestDataFormat)
	}
	if n < fsm.LatestDataFormat {
		log.Info("data format held below this build's latest: the cluster is not raised past it while this node is a member",
			"max_data_format", n, "latest_data_format", fsm.LatestDataFormat, "env", maxDataFormatEnv)
	}
	return n, nil
}
