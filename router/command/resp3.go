package command

import (
	"github.com/redraft/redraft/router/resp"
)

// COMMAND INFO and COMMAND DOCS in RESP3. The raw replies are stored as redis-server 7.0.15
// sends them in RESP2; Redis's RESP3 replies have the same elements with some aggregates typed:
// in an INFO entry, flags, ACL categories, tips and the key specs are sets, each key spec and
// its begin_search/find_keys (and their spec) are maps, subcommands an array (an empty set
// when there are none); in DOCS, each documentation and argument is a map, history and
// doc_flags and an argument's flags are sets, subcommands a map. TestParity compares every
// served command's entries with redis-server's, in both protocols.

func loadInfo3() {
	infoOnce.Do(loadInfo)
	infoRaw3, docsRaw3 = map[string][]byte{}, map[string][]byte{}
	for n, raw := range infoRaw {
		if v, _, ok := resp.Parse(raw); ok {
			infoRaw3[n] = info3(nil, v)
		}
	}
	for n, raw := range docsRaw {
		if v, _, ok := resp.Parse(raw); ok {
			docsRaw3[n] = docs3(nil, v)
		}
	}
}

// info3 appends one COMMAND INFO entry in RESP3.
func info3(b []byte, v resp.Value) []byte {
	if v.Type != '*' || len(v.Elems) != 10 {
		return append(b, v.Raw...)
	}
	b = resp.AppendArray(b, 10)
	for i, e := range v.Elems {
		switch i {
		case 2, 6, 7:
			b = asSet(b, e)
		case 8:
			b = resp.AppendSet(b, len(e.Elems), true)
			for _, ks := range e.Elems {
				b = mapOf(b, ks, keySpec3)
			}
		case 9:
			if len(e.Elems) == 0 {
				b = resp.AppendSet(b, 0, true)
				continue
			}
			b = resp.AppendArray(b, len(e.Elems))
			for _, sub := range e.Elems {
				b = info3(b, sub)
			}
		default:
			b = append(b, e.Raw...)
		}
	}
	return b
}

func keySpec3(b []byte, key string, v resp.Value) []byte {
	switch key {
	case "flags":
		return asSet(b, v)
	case "begin_search", "find_keys":
		return mapOf(b, v, func(b []byte, key string, v resp.Value) []byte {
			if key == "spec" {
				return mapOf(b, v, nil)
			}
			return append(b, v.Raw...)
		})
	}
	return append(b, v.Raw...)
}

// docs3 appends one command's documentation in RESP3.
func docs3(b []byte, v resp.Value) []byte {
	return mapOf(b, v, func(b []byte, key string, v resp.Value) []byte {
		switch key {
		case "history", "doc_flags":
			return asSet(b, v)
		case "arguments":
			return args3(b, v)
		case "subcommands":
			return mapOf(b, v, func(b []byte, _ string, v resp.Value) []byte { return docs3(b, v) })
		}
		return append(b, v.Raw...)
	})
}

func args3(b []byte, v resp.Value) []byte {
	if v.Type != '*' {
		return append(b, v.Raw...)
	}
	b = resp.AppendArray(b, len(v.Elems))
	for _, a := range v.Elems {
		b = mapOf(b, a, func(b []byte, key string, v resp.Value) []byte {
			switch key {
			case "flags":
				return asSet(b, v)
			case "arguments":
				return args3(b, v)
			}
			return append(b, v.Raw...)
		})
	}
	return b
}

// asSet appends array v as a set.
func asSet(b []byte, v resp.Value) []byte {
	if v.Type != '*' || v.Int < 0 {
		return append(b, v.Raw...)
	}
	b = resp.AppendSet(b, len(v.Elems), true)
	for _, e := range v.Elems {
		b = append(b, e.Raw...)
	}
	return b
}

// mapOf appends v, a flat array of keys and values, as a map whose values value writes (nil:
// as they are).
func mapOf(b []byte, v resp.Value, value func(b []byte, key string, v resp.Value) []byte) []byte {
	if v.Type != '*' || len(v.Elems)%2 != 0 {
		return append(b, v.Raw...)
	}
	b = resp.AppendMap(b, len(v.Elems)/2, true)
	for i := 0; i < len(v.Elems); i += 2 {
		b = append(b, v.Elems[i].Raw...)
		if value == nil {
			b = append(b, v.Elems[i+1].Raw...)
		} else {
			b = value(b, string(v.Elems[i].Str), v.Elems[i+1])
		}
	}
	return b
}
