package fsm

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// flushState is migrationState with a group in dc2 too: both DCs delete in a flush.
func flushState(t *testing.T) *State {
	t.Helper()
	s := migrationState(t)
	s = mustApply(t, s, &AddGroup{DC: "dc2", Group: Group{ID: "h1", Master: "127.0.0.1:7101"}})
	return mustApply(t, s, &AssignSlots{DC: "dc2", Group: "h1", Ranges: []SlotRange{{0, NumSlots - 1}}})
}

func TestFlushCommandsRoundTrip(t *testing.T) {
	for _, c := range []Command{
		&StartFlush{Token: "n1:1", DB: FlushAllDBs, Async: true, Node: "n1"},
		&StartFlush{Token: "n1:2", DB: 3, Node: "n1"},
		&AckFlush{ID: 7, Node: "n2"},
		&FinishFlush{ID: 7, Node: "x1"},
		&AbortFlush{ID: 7, Reason: "node n2 did not ack within 30s"},
	} {
		b, err := Encode(c)
		if err != nil {
			t.Fatalf("encode %s: %v", c.Name(), err)
		}
		if b[0] < 19 || b[0] > 22 {
			t.Errorf("%s has type %d, want 19..22", c.Name(), b[0])
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", c.Name(), err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip of %s: got %+v, want %+v", c.Name(), got, c)
		}
	}
}

func TestFlushPhases(t *testing.T) {
	s := flushState(t)
	s = mustApply(t, s, &StartFlush{Token: "tok", DB: FlushAllDBs, Node: "n1"})
	f := s.Flush
	if f == nil || f.Phase != FlushFrozen || f.ID != s.Index || !f.Covers(5) {
		t.Fatalf("after start: %+v", f)
	}
	id := f.ID
	if got := strings.Join(s.FlushWaiting(), ","); got != "n1,n2,x1" {
		t.Fatalf("waiting for %q, want every node of every DC", got)
	}
	applyRefused(t, s, &StartFlush{Token: "t2", DB: 0, Node: "n2"}, "busy", "in progress")
	applyRefused(t, s, &StartFlush{Token: "tok", DB: FlushAllDBs, Node: "n1"}, "exists", "this token")
	applyRefused(t, s, &StartMigration{DC: "dc1", Slots: []SlotRange{{0, 9}}, To: "g2"}, "busy", "flush")
	applyRefused(t, s, &FinishFlush{ID: id, Node: "n1"}, "busy", "not deleting")
	applyRefused(t, s, &AckFlush{ID: id + 1, Node: "n1"}, "not_found", "")
	applyRefused(t, s, &AckFlush{ID: id, Node: "ghost"}, "not_found", "")
	for _, n := range []string{"n1", "n2", "n1"} {
		s = mustApply(t, s, &AckFlush{ID: id, Node: n})
	}
	if s.Flush.Phase != FlushFrozen {
		t.Fatalf("deleting before x1 acked: %+v", s.Flush)
	}
	s = mustApply(t, s, &AckFlush{ID: id, Node: "x1"})
	if s.Flush.Phase != FlushDeleting {
		t.Fatalf("after every ack: %+v", s.Flush)
	}
	// Once deleting, a flush cannot be aborted: it is all or nothing.
	applyRefused(t, s, &AbortFlush{ID: id, Reason: "late"}, "busy", "no longer")
	s = mustApply(t, s, &FinishFlush{ID: id, Node: "n2"})
	s = mustApply(t, s, &FinishFlush{ID: id, Node: "n1"}) // the DC already reported: no change
	if s.Flush.Phase != FlushDeleting || s.Flush.Deleted["dc1"] != "n2" || s.Flushes != 0 {
		t.Fatalf("after dc1 reported: %+v (flushes %d)", s.Flush, s.Flushes)
	}
	s = mustApply(t, s, &FinishFlush{ID: id, Node: "x1"})
	if s.Flush.Phase != FlushDone || s.Flushes != 1 || s.Flush.Active() {
		t.Fatalf("after every DC reported: %+v (flushes %d)", s.Flush, s.Flushes)
	}
	s = mustApply(t, s, &FinishFlush{ID: id, Node: "x1"}) // a straggler's report
	// The same request again (a proposal retried after its first try committed) starts no
	// second flush.
	applyRefused(t, s, &StartFlush{Token: "tok", DB: FlushAllDBs, Node: "n1"}, "exists", "this token")
	// The next flush and migrations are accepted again.
	s = mustApply(t, s, &StartFlush{Token: "t3", DB: 2, Node: "x1"})
	if s.Flush.Covers(0) || !s.Flush.Covers(2) {
		t.Fatalf("FLUSHDB 2 covers: %+v", s.Flush)
	}
}

func TestFlushAbortAndRemovedNode(t *testing.T) {
	s := flushState(t)
	s = mustApply(t, s, &StartFlush{Token: "tok", DB: 0, Node: "n1"})
	id := s.Flush.ID
	s = mustApply(t, s, &AckFlush{ID: id, Node: "n1"})
	s = mustApply(t, s, &AckFlush{ID: id, Node: "x1"})
	// Removing the one node that has not acked releases the barrier.
	r := mustApply(t, s, &RemoveNode{ID: "n2"})
	if r.Flush.Phase != FlushDeleting {
		t.Fatalf("after removing the last node not acked: %+v", r.Flush)
	}
	s = mustApply(t, s, &AbortFlush{ID: id, Reason: "node n2 did not ack"})
	if s.Flush.Phase != FlushFailed || s.Flush.Reason != "node n2 did not ack" || s.Flushes != 0 {
		t.Fatalf("after abort: %+v", s.Flush)
	}
	if s2, _ := ApplyCommand(s, s.Index+1, &AckFlush{ID: id, Node: "n2"}); s2.Flush.Phase != FlushFailed {
		t.Fatalf("a late ack revived a failed flush: %+v", s2.Flush)
	}
}

func TestFlushValidation(t *testing.T) {
	s := flushState(t)
	applyRefused(t, s, &StartFlush{DB: 0, Node: "n1"}, "invalid", "token")
	applyRefused(t, s, &StartFlush{Token: "t", DB: -2, Node: "n1"}, "invalid", "out of range")
	applyRefused(t, s, &StartFlush{Token: "t", DB: 1 << 20, Node: "n1"}, "invalid", "out of range")
	off := mustApply(t, s, &SetSetting{Key: "flush_enabled", Value: "false"})
	applyRefused(t, off, &StartFlush{Token: "t", DB: 0, Node: "n1"}, "invalid", "flush_enabled")
	mig := mustApply(t, s, &StartMigration{DC: "dc1", Slots: []SlotRange{{0, 9}}, To: "g2"})
	applyRefused(t, mig, &StartFlush{Token: "t", DB: 0, Node: "n1"}, "busy", "migration")
	set := mustApply(t, s, &SetSetting{Key: "flush_timeout", Value: "5s"})
	if set.SettingDuration("flush_timeout").Seconds() != 5 || s.SettingDuration("flush_timeout").Seconds() != 30 {
		t.Fatalf("flush_timeout: %v / default %v", set.Setting("flush_timeout"), s.Setting("flush_timeout"))
	}
}

// A snapshot taken mid-flush restores the flush with its acks, and the restored state goes on.
func TestFlushSnapshotRestore(t *testing.T) {
	s := flushState(t)
	s = mustApply(t, s, &StartFlush{Token: "tok", DB: FlushAllDBs, Node: "n1"})
	id := s.Flush.ID
	fresh := s // no acks yet: the maps are empty and omitted in JSON
	s = mustApply(t, s, &AckFlush{ID: id, Node: "n1"})
	for _, st := range []*State{fresh, s} {
		var buf bytes.Buffer
		if err := WriteSnapshot(&buf, st); err != nil {
			t.Fatal(err)
		}
		r, err := ReadSnapshot(&buf)
		if err != nil {
			t.Fatal(err)
		}
		// Maps that are omitempty come back empty where they were nil: the same flush.
		want, got := *st.Flush, *r.Flush
		for _, f := range []*Flush{&want, &got} {
			if f.Acks == nil {
				f.Acks = map[string]uint64{}
			}
			if f.Deleted == nil {
				f.Deleted = map[string]string{}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("restored flush %+v, want %+v", got, want)
		}
		for _, n := range []string{"n1", "n2", "x1"} {
			r = mustApply(t, r, &AckFlush{ID: id, Node: n})
		}
		r = mustApply(t, r, &FinishFlush{ID: id, Node: "n1"})
		r = mustApply(t, r, &FinishFlush{ID: id, Node: "x1"})
		if r.Flush.Phase != FlushDone || r.Flushes != 1 {
			t.Fatalf("restored flush did not finish: %+v", r.Flush)
		}
	}
	// Clones do not share the flush's maps.
	c := s.Clone()
	c.Flush.Acks["n2"] = 9
	if _, ok := s.Flush.Acks["n2"]; ok {
		t.Fatal("Clone shares the flush's acks")
	}
}
