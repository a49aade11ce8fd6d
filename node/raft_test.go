package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/redraft/redraft/fsm"
)

// TestUnreadableEntryStopsApplying: an entry this build cannot read (a newer build's command
// type, or a field it does not know) stops the state machine where it is, instead of being
// skipped while the entries after it are applied: skipped, the node's state would differ from
// the others' for good.
func TestUnreadableEntryStopsApplying(t *testing.T) {
	good, err := fsm.Encode(&fsm.SetSetting{Key: "max_voters", Value: "3"})
	if err != nil {
		t.Fatal(err)
	}
	unreadable := map[string][]byte{
		"unknown type":  {0x7f, 1, '{', '}'},
		"unknown field": append([]byte{byte(fsm.TypeSetSetting), 1}, `{"key":"max_voters","value":"5","later":1}`...),
	}
	for name, data := range unreadable {
		m := newStateMachine()
		var halted []uint64
		m.halt = func(index uint64, err error) { halted = append(halted, index) }
		if r := m.Apply(&raft.Log{Index: 1, Data: good}); r != nil {
			t.Fatalf("%s: good entry: %v", name, r)
		}
		r := m.Apply(&raft.Log{Index: 2, Data: data})
		if err, _ := r.(error); !errors.Is(err, fsm.ErrUnreadable) || len(halted) != 1 || halted[0] != 2 {
			t.Errorf("%s: Apply = %v, halted at %v; want a stop at 2", name, r, halted)
		}
		if st := m.state.Load(); st.Index != 1 || st.Setting("max_voters") != "3" {
			t.Errorf("%s: state moved past the unreadable entry: index %d, max_voters %s", name, st.Index, st.Setting("max_voters"))
		}
	}
	// By default the stop is a panic that says what to do.
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "upgrade this node") {
				t.Errorf("default halt: recovered %v", r)
			}
		}()
		newStateMachine().Apply(&raft.Log{Index: 1, Data: unreadable["unknown type"]})
	}()
	// An ignorable unknown type is still skipped.
	m := newStateMachine()
	m.halt = func(index uint64, err error) { t.Errorf("halted at %d on an ignorable entry: %v", index, err) }
	m.Apply(&raft.Log{Index: 1, Data: []byte{0x90, 1}})
	if m.state.Load().Index != 1 {
		t.Error("an ignorable entry did not move the index")
	}
}

// TestLeaderRefusesUnreadableProposal: a leader does not commit an entry it cannot read (one
// forwarded by a newer build), which would stop every node of its build; it answers an error
// and goes on.
func TestLeaderRefusesUnreadableProposal(t *testing.T) {
	c := newTestCluster(t)
	n := c.start("n1", "dc1")
	before := n.State().Index
	_, err := n.applyLocal(append([]byte{byte(fsm.TypeSetSetting), 1}, `{"key":"max_voters","value":"5","later":1}`...))
	var fe *fsm.Error
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("applyLocal of an unreadable entry: %v", err)
	}
	if err := n.Propose(context.Background(), &fsm.SetSetting{Key: "max_voters", Value: "5"}); err != nil {
		t.Fatal(err)
	}
	if st := n.State(); st.Setting("max_voters") != "5" || st.Index <= before {
		t.Errorf("after a refused entry the node stopped applying: max_voters %s", st.Setting("max_voters"))
	}
}
