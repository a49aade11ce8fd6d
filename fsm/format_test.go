package fsm

import (
	"bytes"
	"testing"
)

// withFormats re-registers every node of s as running data formats up to max.
func withFormats(t *testing.T, s *State, index uint64, max int) *State {
	t.Helper()
	for _, id := range s.NodeIDs() {
		n := *s.Nodes[id]
		n.MaxFormat = max
		index++
		s = applyOK(t, s, index, &AddNode{Node: n})
	}
	return s
}

func TestDataFormatRaisesOneStepOnceEveryNodeRunsAndActsOnIt(t *testing.T) {
	s := testState(t)
	if s.Format() != FirstDataFormat || s.DataFormat != 0 {
		t.Fatalf("new cluster format %d (stored %d)", s.Format(), s.DataFormat)
	}
	// No node registered a format: builds from before formats run the first one only.
	if to, why := s.NextDataFormat(); to != 0 || why != "node n1 runs data formats up to 1" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}
	applyRefused(t, s, &RaiseDataFormat{To: 2}, "busy", "runs data formats up to 1")

	// Two of three nodes run format 3: still no raise.
	for i, id := range []string{"n1", "n2"} {
		n := *s.Nodes[id]
		n.MaxFormat = 3
		s = applyOK(t, s, uint64(21+i), &AddNode{Node: n})
	}
	if to, why := s.NextDataFormat(); to != 0 || why != "node n3 runs data formats up to 1" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}
	s = withFormats(t, s, 30, 3)
	if to, _ := s.NextDataFormat(); to != 2 {
		t.Fatalf("NextDataFormat = %d, want 2", to)
	}
	// Only one step at a time.
	applyRefused(t, s, &RaiseDataFormat{To: 3}, "invalid", "can be raised to 2 only, not 3")
	s = applyOK(t, s, 41, &RaiseDataFormat{To: 2})
	if s.Format() != 2 {
		t.Fatalf("format %d after the raise", s.Format())
	}
	// A repeated raise (a retry, a new leader's) changes nothing.
	if again := applyOK(t, s, 42, &RaiseDataFormat{To: 2}); again.Format() != 2 {
		t.Fatalf("format %d after a repeated raise", again.Format())
	}
	// Format 3 waits until every node reported acting on 2.
	if to, why := s.NextDataFormat(); to != 0 || why != "node n1 has not reported acting on data format 2" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}
	s = applyOK(t, s, 43, &AckDataFormat{Node: "n1", Format: 2})
	s = applyOK(t, s, 44, &AckDataFormat{Node: "n2", Format: 2})
	applyRefused(t, s, &RaiseDataFormat{To: 3}, "busy", "node n3 has not reported acting on data format 2")
	s = applyOK(t, s, 46, &AckDataFormat{Node: "n3", Format: 2})
	s = applyOK(t, s, 47, &RaiseDataFormat{To: 3})
	if s.Format() != 3 {
		t.Fatalf("format %d", s.Format())
	}
	// Nothing runs 4.
	if to, why := s.NextDataFormat(); to != 0 || why != "node n1 runs data formats up to 3" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}
}

func TestDataFormatAcksAndRegistrations(t *testing.T) {
	s := withFormats(t, testState(t), 20, 2)
	s = applyOK(t, s, 30, &RaiseDataFormat{To: 2})
	applyRefused(t, s, &AckDataFormat{Node: "n9", Format: 2}, "not_found", "node n9 is not a member")
	applyRefused(t, s, &AckDataFormat{Node: "n1", Format: 3}, "invalid", "above the cluster's 2")
	s = applyOK(t, s, 33, &AckDataFormat{Node: "n1", Format: 2})
	// An older ack arriving late does not take the report back.
	s = applyOK(t, s, 34, &AckDataFormat{Node: "n1", Format: 1})
	if s.Nodes["n1"].ActsOn() != 2 {
		t.Fatalf("n1 acts on %d", s.Nodes["n1"].ActsOn())
	}

	// A node restarted on an older build cannot register again, nor can a new one join.
	old := *s.Nodes["n2"]
	old.MaxFormat = 1
	applyRefused(t, s, &AddNode{Node: old}, "invalid", "node n2 runs data formats up to 1, and the cluster writes format 2: run a newer build on it")
	applyRefused(t, s, &AddNode{Node: testNode("n5", "east", "005")}, "invalid", "node n5 runs data formats up to 1")

	// A re-registration (new addresses, a newer build) keeps what the node reported; a node
	// that joins anew has reported nothing.
	n1 := *s.Nodes["n1"]
	n1.Listen, n1.MaxFormat, n1.Format = "10.0.0.9:6001", 3, 0
	s = applyOK(t, s, 37, &AddNode{Node: n1})
	if got := s.Nodes["n1"]; got.ActsOn() != 2 || got.MaxDataFormat() != 3 {
		t.Fatalf("n1 after re-registering: acts on %d, runs up to %d", got.ActsOn(), got.MaxDataFormat())
	}
	s = applyOK(t, s, 38, &RemoveNode{ID: "n1"})
	n1.Format = 2
	s = applyOK(t, s, 39, &AddNode{Node: n1})
	if got := s.Nodes["n1"]; got.ActsOn() != FirstDataFormat {
		t.Fatalf("n1 joined anew acts on %d", got.ActsOn())
	}
	if to, why := s.NextDataFormat(); to != 0 || why != "node n1 has not reported acting on data format 2" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}
	s = applyOK(t, s, 40, &AckDataFormat{Node: "n1", Format: 2})
	if to, why := s.NextDataFormat(); to != 0 || why != "node n2 runs data formats up to 2" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}
	// A removed node no longer holds up a raise.
	s = applyOK(t, s, 41, &RemoveNode{ID: "n2"})
	if to, why := s.NextDataFormat(); to != 0 || why != "node n3 runs data formats up to 2" {
		t.Fatalf("NextDataFormat = %d, %q", to, why)
	}

	// The format survives a snapshot.
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, s); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Format() != 2 || got.Nodes["n1"].ActsOn() != 2 || got.Nodes["n1"].MaxDataFormat() != 3 {
		t.Fatalf("after a snapshot: format %d, n1 acts on %d and runs up to %d", got.Format(), got.Nodes["n1"].ActsOn(), got.Nodes["n1"].MaxDataFormat())
	}
}
