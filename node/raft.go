package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/redraft/redraft/fsm"
)

// raftLayer is the raft.StreamLayer on the multiplexed peer port.
type raftLayer struct {
	*subListener
	advertise net.Addr
	dialer    peerDialer
}

// Addr is the advertised peer address: Raft tells its peers this address (as the leader's),
// so it must be the one they can dial, not a wildcard the listener is bound to.
func (l raftLayer) Addr() net.Addr { return l.advertise }

// peerAddr is an advertised HOST:PORT as a net.Addr.
type peerAddr string

// Network implements net.Addr.
func (peerAddr) Network() string { return "tcp" }

// String implements net.Addr.
func (a peerAddr) String() string { return string(a) }

// Dial connects to another node's Raft service.
func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.dialer.dial(string(addr), muxRaft, timeout)
}

// stateMachine is the raft.FSM: it applies entries with fsm.Apply and publishes each new state.
type stateMachine struct {
	state atomic.Pointer[fsm.State]
	mu    sync.Mutex // serialises observers with Apply/Restore
	obs   []func(*fsm.State)
	// halt is called with an entry this build cannot read (fsm.ErrUnreadable); it must not
	// return (the default panics), since every state after the entry would be wrong.
	halt func(index uint64, err error)
}

func newStateMachine() *stateMachine {
	m := &stateMachine{halt: func(index uint64, err error) {
		panic(fmt.Sprintf("redraft: Raft entry %d: %v; this node stops rather than go on without it", index, err))
	}}
	m.state.Store(fsm.New())
	return m
}

// Apply implements raft.FSM. The response is nil or the command's error. An entry this build
// cannot read (a newer build's command, committed by a newer leader) stops the node: the
// state after it would differ from the other nodes' for good (fsm.ErrUnreadable). Upgraded,
// the node applies it from its log on start.
func (m *stateMachine) Apply(l *raft.Log) interface{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := fsm.Apply(m.state.Load(), l.Index, l.Data)
	if errors.Is(err, fsm.ErrUnreadable) {
		m.halt(l.Index, err)
		return err
	}
	m.publish(next)
	if err != nil {
		return err
	}
	return nil
}

func (m *stateMachine) publish(s *fsm.State) {
	m.state.Store(s)
	for _, f := range m.obs {
		f(s)
	}
}

func (m *stateMachine) observe(f func(*fsm.State)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.obs = append(m.obs, f)
	f(m.state.Load())
}

// Snapshot implements raft.FSM: the state is immutable, so the pointer is the snapshot.
func (m *stateMachine) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{s: m.state.Load()}, nil
}

// Restore implements raft.FSM.
func (m *stateMachine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := fsm.ReadSnapshot(rc)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.publish(s)
	return nil
}

type fsmSnapshot struct{ s *fsm.State }

// Persist writes the state to the snapshot sink.
func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := fsm.WriteSnapshot(sink, f.s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot; the state is immutable, so there is nothing to free.
func (f *fsmSnapshot) Release() {}

// raftParts are the pieces newRaft builds, closed together on shutdown.
type raftParts struct {
	raft      *raft.Raft
	transport *voteGate
	store     *raftboltdb.BoltStore
	existing  bool
}

func (p *raftParts) close() {
	if p.raft != nil {
		_ = p.raft.Shutdown().Error()
	}
	if p.transport != nil {
		_ = p.transport.Close()
	}
	if p.store != nil {
		_ = p.store.Close()
	}
}

// newRaft opens the Raft stores under dataDir and starts Raft on the peer layer.
func newRaft(cfg *Config, layer raft.StreamLayer, m *stateMachine, logOut io.Writer, wrapLogs func(raft.LogStore) raft.LogStore) (*raftParts, error) {
	p := &raftParts{}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = 1000 * time.Millisecond
	rc.ElectionTimeout = 1000 * time.Millisecond
	// A leader steps down after this long without a quorum's answers. hashicorp/raft's 500 ms
	// (a LAN's) made a loaded host's leader step down every 5-10 s when the answers, through
	// the integration tests' relays, took 500-700 ms: no leader for up to 30 s at a time, and
	// migrations whose slot owner never held its lease long enough to switch. 1 s (the most
	// hashicorp/raft allows: the heartbeat timeout) cut the step-downs 3-5 times in the same
	// runs. RemoveGrace grew by the same 0.5 s, keeping its 1 s margin over it.
	rc.LeaderLeaseTimeout = 1000 * time.Millisecond
	rc.SnapshotThreshold = 8192
	rc.SnapshotInterval = 30 * time.Second
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: logOut})

	// 0700, an existing directory included: the log and the snapshots (which hashicorp/raft
	// writes 0644) hold the groups' backend passwords (until session 43 the directory was 0755,
	// and only the data dir's own mode kept others out).
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("open raft store: %w", err)
	}
	p.store = store
	snaps, err := raft.NewFileSnapshotStore(dir, 2, logOut)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	p.existing, err = raft.HasExistingState(store, store, snaps)
	if err != nil {
		p.close()
		return nil, err
	}
	// A node that starts on an empty data dir to join (seeds set) votes only once it joined
	// (voteGate); one that starts a new cluster, or on its own history, votes at once.
	p.transport = newVoteGate(raft.NewNetworkTransport(layer, 5, 10*time.Second, logOut), p.existing || len(cfg.Seeds) == 0)
	var logs raft.LogStore = store
	if wrapLogs != nil {
		logs = wrapLogs(store)
	}
	r, err := raft.NewRaft(rc, m, logs, store, snaps, p.transport)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	p.raft = r
	return p, nil
}
