package xdc

import (
	"fmt"
	"reflect"
	"testing"
)

// TestLogMemo: a memo follows a destination's answers without a gap, notes the last entry
// with effects applied, and starts again at an answer it did not follow (another node
// shipped meanwhile) and after a gap.
func TestLogMemo(t *testing.T) {
	var ms logMemos
	k := logMemoKey{log: LogID{DC: "dc1", Group: "g"}, db: 0, dest: "dc2"}
	beat := func(id string) Entry { return Entry{ID: id} }
	write := func(id string) Entry { return Entry{ID: id, Cmds: WireCmds{{"SET", "k", "v"}}} }
	check := func(what string, want logMemo) {
		t.Helper()
		if got := ms.m[k]; got == nil || !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: memo %+v, want %+v", what, got, want)
		}
	}
	ms.started(k, "1-0")
	check("started", logMemo{from: "1-0", pos: "1-0"})
	ms.answered(k, "1-0", []Entry{beat("2-0"), write("3-0"), beat("4-0"), write("5-0")}, "4-0")
	check("a range applied through 4-0", logMemo{from: "1-0", pos: "4-0", writes: []string{"3-0"}})
	ms.answered(k, "4-0", []Entry{write("5-0"), beat("6-0")}, "4-0")
	check("a range held", logMemo{from: "1-0", pos: "4-0", writes: []string{"3-0"}})
	ms.started(k, "4-0")
	check("a shipper started where the memo stands", logMemo{from: "1-0", pos: "4-0", writes: []string{"3-0"}})
	ms.started(k, "7-0")
	check("a shipper started elsewhere", logMemo{from: "7-0", pos: "7-0"})
	ms.answered(k, "9-0", []Entry{beat("10-0")}, "10-0")
	check("an answer after a position the memo did not follow", logMemo{from: "9-0", pos: "10-0"})
	ms.answered(k, "10-0", []Entry{write("11-0")}, "8-0")
	check("a gap", logMemo{from: "8-0", pos: "8-0"})
	// Past memoWrites writes the oldest half is dropped, and the memo knows entries only
	// from the oldest one kept.
	ms.started(k, "100-0")
	var es []Entry
	for i := 1; i <= memoWrites+1; i++ {
		es = append(es, write(fmt.Sprintf("100-%d", i)))
	}
	ms.answered(k, "100-0", es, es[len(es)-1].ID)
	if m := ms.m[k]; len(m.writes) != memoWrites/2+1 || m.from != fmt.Sprintf("100-%d", memoWrites/2+1) || m.writes[0] != m.from {
		t.Errorf("after %d writes: from %s, %d writes kept from %s", memoWrites+1, m.from, len(m.writes), m.writes[0])
	}
	if got, err := idAfter("1796434627228-41"); err != nil || got != "1796434627228-42" {
		t.Errorf("idAfter = %q, %v", got, err)
	}
	if _, err := idAfter("x"); err == nil {
		t.Error("idAfter of a bad id: no error")
	}
}
