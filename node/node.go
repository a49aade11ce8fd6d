package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// ErrRemoved means this node was removed from the cluster and no longer serves.
var ErrRemoved = errors.New("this node was removed from the cluster")

// Node is one running redraft node: a Raft member with its peer and admin ports.
type Node struct {
	cfg   Config
	log   *slog.Logger
	sm    *stateMachine
	cur   *current
	parts *raftParts
	raft  *raft.Raft
	mux   *mux
	peers *peerClient

	peerAddr, listenAddr, adminAddr string // advertised addresses

	rpcSrv   *http.Server
	adminSrv *http.Server
	adminLn  net.Listener

	metrics *metrics

	mu          sync.Mutex
	removed     string // why this node stopped serving ("" while a member)
	removedCh   chan struct{}
	removing    map[string]int // ids this leader is removing (how many removes of each run)
	registered  bool
	joinIndex   uint64
	stop        chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
	extraStatus func() any
	opts        Options
	// reportedFormat is the data format this node last reported acting on (format.go);
	// formatRefused is set once the node logged that its build is older than the cluster's
	// format (current.go).
	reportedFormat atomic.Int64
	formatRefused  atomic.Bool
	// joinMu, at the leader, keeps a join (from its format check to its AddNode) and a raise
	// of the data format apart: a raise between them would leave a voter the state refuses.
	joinMu sync.Mutex
}

// Options are the parts of a node that its embedder (the CLI) supplies.
type Options struct {
	// Logger receives the node's logs (default: slog.Default()).
	Logger *slog.Logger
	// LogOutput receives Raft's own log lines (default: os.Stderr).
	LogOutput io.Writer
	// Status, when set, adds its value under "data_plane" in this node's status.
	Status func() any
	// RPC are extra calls served on the peer port at /rpc/x/<name> (cross-DC replication's);
	// other nodes reach them with CallPeer.
	RPC map[string]RPCFunc
	// Replication, when set, reports this node's cross-DC shipping per DC pair; the cluster
	// status merges every member's.
	Replication func() []ReplicationPair
	// Servers, when set, reports the Redis servers of this node's DC as its failover watcher
	// sees them; the cluster status shows them per group.
	Servers func() []ServerView
	// MaxDataFormat is the highest data format this build runs (fsm/cmd_format.go; 0 is
	// fsm.LatestDataFormat). Tests set it to act as another build.
	MaxDataFormat int
	// SwitchDataFormat, when set, is called once the node acts on a cluster state whose data
	// format is above the one it reported: it returns when nothing the data plane does still
	// uses an older format (format.go); the node then reports the new one.
	SwitchDataFormat func(ctx context.Context, format int) error
	// logStore, when set, wraps the node's Raft log store (tests: a disk that refuses writes).
	logStore func(raft.LogStore) raft.LogStore
}

// RPCFunc serves one extra peer call: the JSON request body in, a JSON-encodable answer out.
type RPCFunc func(ctx context.Context, body json.RawMessage) (any, error)

// identity is written in the data dir so a data dir is never used by another node id.
type identity struct {
	ID string `json:"id"`
	DC string `json:"datacenter"`
	// JoinIndex is the Raft index of this node's last join that the cluster answered: on a
	// restart the state may be an older snapshot that lists the node under an earlier join,
	// whose removal the log then replays (recordJoin).
	JoinIndex uint64 `json:"join_index,omitempty"`
}

// Start opens the data dir, starts Raft and the peer and admin ports, and registers the node:
// the first node (no seeds, empty data dir) bootstraps a new cluster; others join through a seed.
// The same config serves the first start and every restart.
func Start(cfg Config, opts Options) (*Node, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LogOutput == nil {
		opts.LogOutput = os.Stderr
	}
	if opts.MaxDataFormat == 0 {
		opts.MaxDataFormat = fsm.LatestDataFormat
	}
	if err := claimDataDir(cfg.DataDir, cfg.ID, cfg.DC); err != nil {
		return nil, err
	}
	if err := cfg.loadSecretFiles(); err != nil {
		return nil, err
	}
	tlsServer, tlsClient, err := peerTLS(&cfg)
	if err != nil {
		return nil, err
	}
	adminTLSConf, err := adminTLS(&cfg)
	if err != nil {
		return nil, err
	}
	auth := newPeerAuth(cfg.ClusterSecret, opts.Logger.With("node", cfg.ID))
	// Peer dials leave from the peer listen address, over TLS when configured.
	dialer := peerDialer{from: peerSourceIP(cfg.PeerListen), tls: tlsClient, auth: auth}
	n := &Node{
		cfg:         cfg,
		log:         opts.Logger.With("node", cfg.ID),
		sm:          newStateMachine(),
		cur:         newCurrent(opts.MaxDataFormat),
		peers:       newPeerClient(dialer),
		removedCh:   make(chan struct{}),
		stop:        make(chan struct{}),
		extraStatus: opts.Status,
		opts:        opts,
	}
	halt := n.sm.halt
	n.sm.halt = func(index uint64, err error) {
		n.log.Error("cannot apply a Raft entry: this node stops; upgrade it to the cluster's build and start it again", "index", index, "err", err)
		halt(index, err)
	}
	peerLn, err := net.Listen("tcp", cfg.PeerListen)
	if err != nil {
		return nil, fmt.Errorf("peer_listen %s: %w", cfg.PeerListen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		peerLn.Close()
		return nil, fmt.Errorf("admin_listen %s: %w", cfg.AdminListen, err)
	}
	n.adminLn = adminLn
	n.peerAddr = advertised(cfg.PeerListen, peerLn.Addr(), cfg.Advertise)
	n.adminAddr = advertised(cfg.AdminListen, adminLn.Addr(), cfg.Advertise)
	clientAddr := cfg.Listen
	if clientAddr == ListenNone {
		clientAddr = cfg.TLSListen // TLS clients only: that is the client address
	}
	n.listenAddr = advertised(clientAddr, nil, cfg.Advertise)

	if tlsServer != nil {
		peerLn = tls.NewListener(peerLn, tlsServer)
	}
	if adminTLSConf != nil {
		adminLn = tls.NewListener(adminLn, adminTLSConf)
	}
	n.mux = newMux(peerLn, n.log, auth)
	layer := raftLayer{subListener: n.mux.listen(muxRaft), advertise: peerAddr(n.peerAddr), dialer: dialer}
	rpcLn := n.mux.listen(muxRPC)
	go n.mux.serve()

	parts, err := newRaft(&n.cfg, layer, n.sm, opts.LogOutput, opts.logStore)
	if err != nil {
		n.mux.close()
		adminLn.Close()
		return nil, err
	}
	n.parts, n.raft = parts, parts.raft
	n.metrics = newMetrics(n)
	n.sm.observe(n.watchState)
	n.sm.observe(n.cur.applied)

	// Idle keep-alive connections are closed after idleTimeout: without it one GET /healthz
	// (open to anyone) per connection held a descriptor of the node's for good, which the
	// Raft and client listeners share. The admin API's bodies (16 MiB at most) are read
	// within adminReadTimeout; no write timeout, since a switchover or a profile answers late.
	n.rpcSrv = &http.Server{Handler: n.rpcHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idleTimeout}
	go func() { _ = n.rpcSrv.Serve(rpcLn) }()
	n.adminSrv = &http.Server{Handler: n.adminGuard(n.adminHandler()), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: adminReadTimeout, IdleTimeout: idleTimeout,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)} // TLS handshake failures of scanners
	go func() { _ = n.adminSrv.Serve(adminLn) }()
	n.warnOpenDoors()

	if !parts.existing && len(cfg.Seeds) == 0 {
		n.log.Info("bootstrapping a new cluster", "peer", n.peerAddr)
		f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(n.peerAddr),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	n.wg.Add(4)
	go n.registerLoop()
	go n.leaderLoop()
	go n.currentLoop()
	go n.formatLoop()
	return n, nil
}

// recordJoin keeps index as the node's join index in its data dir (node.json), unless a later
// one is kept there, and returns the later of the two.
func recordJoin(dir string, index uint64) (uint64, error) {
	path := filepath.Join(dir, "node.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return index, err
	}
	var id identity
	if err := json.Unmarshal(data, &id); err != nil {
		return index, fmt.Errorf("data_dir %s: %s is damaged: %v", dir, path, err)
	}
	if id.JoinIndex >= index {
		return id.JoinIndex, nil
	}
	id.JoinIndex = index
	data, _ = json.Marshal(id)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return index, err
	}
	return index, os.Rename(tmp, path)
}

// claimDataDir creates dir and checks, or writes, the node identity kept in it.
func claimDataDir(dir, id, dc string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil { // the Raft log holds backend passwords
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "node.json")
	data, err := os.ReadFile(path)
	if err == nil {
		var got identity
		if err := json.Unmarshal(data, &got); err != nil {
			return fmt.Errorf("data_dir %s: %s is damaged: %v", dir, path, err)
		}
		if got.ID != id {
			return fmt.Errorf("data_dir %s belongs to node %q, not %q: use that node's id, or another data_dir for a new node", dir, got.ID, id)
		}
		if got.DC != dc {
			return fmt.Errorf("data_dir %s belongs to node %q of datacenter %q, not %q", dir, id, got.DC, dc)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	data, _ = json.Marshal(identity{ID: id, DC: dc})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	return os.Rename(tmp, path)
}

// advertised picks the address others use to reach a listener: the configured address, with
// the advertise host instead of a wildcard host, and the bound port when port 0 was asked for.
func advertised(listen string, bound net.Addr, advertiseHost string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if bound != nil {
		if _, p, err := net.SplitHostPort(bound.String()); err == nil {
			port = p
		}
	}
	if advertiseHost != "" {
		host = advertiseHost
	} else if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// self is this node as the cluster state records it.
func (n *Node) self() fsm.Node {
	return fsm.Node{
		ID: n.cfg.ID, DC: n.cfg.DC, Rack: n.cfg.Rack, Tokens: n.cfg.Tokens,
		Listen: n.listenAddr, Peer: n.peerAddr, Admin: n.adminAddr, MaxFormat: n.opts.MaxDataFormat,
	}
}

// State returns the cluster state as applied so far; it must not be modified. It may lag the
// cluster (after a start, or cut off from the leader): what the node acts on is Current.
func (n *Node) State() *fsm.State { return n.sm.state.Load() }

// idleTimeout closes the admin and peer HTTP servers' idle keep-alive connections;
// adminReadTimeout bounds reading an admin request, body included.
const (
	idleTimeout      = 2 * time.Minute
	adminReadTimeout = time.Minute
)

// OnState registers f to be called with every new state (at once with the current one). f runs
// in Raft's apply path and must be quick.
func (n *Node) OnState(f func(*fsm.State)) { n.sm.observe(f) }

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// DC returns the node's datacenter.
func (n *Node) DC() string { return n.cfg.DC }

// PeerAddr returns the advertised peer address.
func (n *Node) PeerAddr() string { return n.peerAddr }

// AdminAddr returns the advertised admin address.
func (n *Node) AdminAddr() string { return n.adminAddr }

// Removed is closed when the node has been removed from the cluster and stops serving.
func (n *Node) Removed() <-chan struct{} { return n.removedCh }

// RemovedReason says why the node stopped serving ("" while it is a member).
func (n *Node) RemovedReason() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removed
}

func (n *Node) removedErr() error {
	if r := n.RemovedReason(); r != "" {
		return fmt.Errorf("%w: %s", ErrRemoved, r)
	}
	return nil
}

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// WaitReady waits until this node is ready as /healthz means it: registered in the cluster
// state, a leader known, and acting on its state (the gate has caught up).
func (n *Node) WaitReady(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := n.removedErr(); err != nil {
			return err
		}
		addr, _ := n.raft.LeaderWithID()
		if _, ok := n.State().Nodes[n.cfg.ID]; ok && addr != "" {
			if acting, _ := n.Acting(); acting {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %w", n.cfg.ID, ctx.Err())
		case <-t.C:
		}
	}
}

// untilStop returns a context that ends when the node stops (or cancel is called).
func (n *Node) untilStop() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Close stops the node: admin and peer ports, then Raft.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if n.adminSrv != nil {
			_ = n.adminSrv.Shutdown(ctx)
		}
		if n.rpcSrv != nil {
			_ = n.rpcSrv.Close()
		}
		n.wg.Wait()
		if n.parts != nil {
			n.parts.close()
		}
		n.mux.close()
		n.peers.tr.CloseIdleConnections()
	})
	return nil
}
