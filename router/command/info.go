package command

import (
	_ "embed"
	"sort"
	"strings"
	"sync"

	"github.com/redraft/redraft/router/resp"
)

var (
	//go:embed command_info.resp
	rawInfo []byte
	//go:embed command_docs.resp
	rawDocs []byte

	infoOnce sync.Once
	infoRaw  map[string][]byte // top-level name -> COMMAND INFO entry
	docsRaw  map[string][]byte // top-level name -> COMMAND DOCS value

	// The same in RESP3, converted once on first use (resp3.go).
	info3Once sync.Once
	infoRaw3  map[string][]byte
	docsRaw3  map[string][]byte
)

func loadInfo() {
	infoRaw, docsRaw = map[string][]byte{}, map[string][]byte{}
	if v, _, ok := resp.Parse(rawInfo); ok {
		for _, e := range v.Elems {
			infoRaw[strings.ToLower(string(e.Elems[0].Str))] = e.Raw
		}
	}
	if v, _, ok := resp.Parse(rawDocs); ok {
		for i := 0; i+1 < len(v.Elems); i += 2 {
			docsRaw[strings.ToLower(string(v.Elems[i].Str))] = v.Elems[i+1].Raw
		}
	}
	for i := range extraSpecs {
		if s := &extraSpecs[i]; !strings.Contains(s.Name, "|") {
			infoRaw[s.Name] = appendSpecInfo(nil, byName[s.Name])
		}
	}
}

// appendSpecInfo appends a COMMAND INFO entry built from a spec without keys (redraft's own
// commands), in redis-server 7.0's layout, subcommands included.
func appendSpecInfo(b []byte, s *Spec) []byte {
	b = resp.AppendArray(b, 10)
	b = resp.AppendBulkString(b, s.Name)
	b = resp.AppendInt(b, int64(s.Arity))
	b = resp.AppendArray(b, len(s.Flags))
	for _, f := range s.Flags {
		b = resp.AppendSimple(b, f)
	}
	b = resp.AppendInt(b, 0)
	b = resp.AppendInt(b, 0)
	b = resp.AppendInt(b, 0)
	b = resp.AppendArray(b, len(s.ACL))
	for _, a := range s.ACL {
		b = resp.AppendSimple(b, "@"+a)
	}
	b = resp.AppendArray(b, 0) // tips
	b = resp.AppendArray(b, 0) // key specs
	names := make([]string, 0, len(s.Subs))
	for n := range s.Subs {
		names = append(names, n)
	}
	sort.Strings(names)
	b = resp.AppendArray(b, len(names))
	for _, n := range names {
		b = appendSpecInfo(b, s.Subs[n])
	}
	return b
}

// Served returns the names of the top-level commands redraft serves, sorted.
func Served() []string {
	var out []string
	for _, s := range All() {
		if s.Kind != Unsupported && !strings.Contains(s.Name, "|") {
			out = append(out, s.Name)
		}
	}
	return out
}

// AppendInfo appends COMMAND INFO's entry for a served top-level command (as redis-server 7.0
// describes it, in RESP3 when r3 is set), or a null when the command is unknown or not served.
func AppendInfo(b []byte, name string, r3 bool) []byte {
	infoOnce.Do(loadInfo)
	raws := infoRaw
	if r3 {
		info3Once.Do(loadInfo3)
		raws = infoRaw3
	}
	name = strings.ToLower(name)
	if s := byName[name]; s != nil && s.Kind != Unsupported {
		if raw, ok := raws[name]; ok {
			return append(b, raw...)
		}
	}
	return resp.AppendNullBulk(b, r3)
}

// AppendDocs appends COMMAND DOCS's name and documentation pair for a served command (in
// RESP3 when r3 is set) and reports whether it did.
func AppendDocs(b []byte, name string, r3 bool) ([]byte, bool) {
	infoOnce.Do(loadInfo)
	raws := docsRaw
	if r3 {
		info3Once.Do(loadInfo3)
		raws = docsRaw3
	}
	name = strings.ToLower(name)
	if s := byName[name]; s != nil && s.Kind != Unsupported {
		if raw, ok := raws[name]; ok {
			b = resp.AppendBulkString(b, name)
			return append(b, raw...), true
		}
	}
	return b, false
}
