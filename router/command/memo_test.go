package command

import "testing"

// TestMemoAgreesWithLookup resolves a sequence of names through one Memo, where each name
// repeats, changes case, changes length or is a container, and checks every answer against
// Lookup: a memory that answered for the wrong name or kept a container would differ.
func TestMemoAgreesWithLookup(t *testing.T) {
	var m Memo
	seq := [][]string{
		{"GET", "k"}, {"GET", "k"}, {"SET", "k", "v"}, {"get", "k"}, {"GeT", "k"},
		{"nosuchcmd"}, {"nosuchcmd"}, {"GET", "k"},
		{"OBJECT", "ENCODING", "k"}, {"OBJECT", "FREQ", "k"}, {"object", "help"},
		{"CLIENT", "ID"}, {"CLIENT", "INFO"}, {"client", "nosuchsub"},
		{"GETSET", "k", "v"}, {"GETDEL", "k"}, {"GETEX", "k"},
		{"ZRANGEBYSCORE", "k", "0", "1"}, {"ZREVRANGEBYSCORE", "k", "1", "0"},
		{"averyveryverylongname"}, {"averyveryverylongname"}, {"GET", "k"},
		{""}, {"GET", "k"},
	}
	for i, words := range seq {
		args := make([][]byte, len(words))
		for j, w := range words {
			args[j] = []byte(w)
		}
		want := Lookup(args)
		if got := m.Lookup(args); got != want {
			t.Fatalf("step %d %q: memo gave %v, Lookup %v", i, words, name(got), name(want))
		}
	}
	if m.Lookup(nil) != nil {
		t.Fatal("no args must resolve to nothing")
	}
}

func name(s *Spec) string {
	if s == nil {
		return "<nil>"
	}
	return s.Name
}

// BenchmarkMemoLookup is a client repeating GET: `go test -run '^$' -bench Lookup ./router/command/`.
func BenchmarkMemoLookup(b *testing.B) {
	var m Memo
	args := [][]byte{[]byte("GET"), []byte("key:1")}
	for b.Loop() {
		m.Lookup(args)
	}
}

// BenchmarkLookup is BenchmarkMemoLookup without the memo.
func BenchmarkLookup(b *testing.B) {
	args := [][]byte{[]byte("GET"), []byte("key:1")}
	for b.Loop() {
		Lookup(args)
	}
}
