package router

import (
	"bytes"
	"strings"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// redraft's own function library (xdc.Library: WRITE and APPLY) lives on every backend next
// to the clients' libraries, in the one function namespace Redis has. Names starting with
// xdc.LibraryPrefix are redraft's: a client may not load, delete, restore or call them, and
// FUNCTION LIST, DUMP and STATS answer as if redraft's library were not there.

// errReservedName refuses a client's use of redraft's library or function names.
var errReservedName = errorf("ERR redraft: library and function names starting with '%s' are reserved for redraft's replication functions", xdc.LibraryPrefix)

// errUnreadableDump refuses a FUNCTION RESTORE payload with a right checksum that the node
// cannot read, since it cannot tell whether it holds one of redraft's libraries.
var errUnreadableDump = errorf("ERR redraft: the FUNCTION RESTORE payload could not be read (an RDB format this node does not know)")

// ownName reports whether name, a library's or function's, is redraft's (Redis compares
// these names without case).
func ownName(name []byte) bool {
	p := xdc.LibraryPrefix
	return len(name) >= len(p) && strings.EqualFold(string(name[:len(p)]), p)
}

// libraryNameOf is the name a library's code gives itself on its first line
// ("#!lua name=mylib"), or nil, read as Redis 7 reads it (functionExtractLibMetaData): the
// line split by sdssplitargs, which takes quotes and escapes off ("#!lua \"NAME=x\"" names x),
// and the first part after the engine that starts with "name=" in any case. A line Redis
// cannot split gives nil: Redis refuses that library.
func libraryNameOf(code []byte) []byte {
	line, _, ok := bytes.Cut(code, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte("#!")) {
		return nil
	}
	parts, ok := splitArgs(line)
	if !ok || len(parts) == 0 {
		return nil
	}
	for _, p := range parts[1:] {
		if len(p) >= 5 && strings.EqualFold(string(p[:5]), "name=") {
			return p[5:]
		}
	}
	return nil
}

// splitArgs is Redis's sdssplitargs: line split at blanks into parts, each of which may hold
// "double-quoted" text with \xHH and \n-style escapes or 'single-quoted' text; a line ends at
// its first NUL byte (Redis reads it as a C string). ok is false where Redis fails: an
// unterminated quote, or a closing quote followed by anything but a blank.
func splitArgs(line []byte) (parts [][]byte, ok bool) {
	if i := bytes.IndexByte(line, 0); i >= 0 {
		line = line[:i]
	}
	at := func(i int) byte { // line as a C string: NUL past its end
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	hex := func(c byte) byte {
		switch {
		case c <= '9':
			return c - '0'
		case c >= 'a':
			return c - 'a' + 10
		}
		return c - 'A' + 10
	}
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p >= len(line) {
			return parts, true
		}
		var cur []byte
		inq, insq := false, false
		for done := false; !done; {
			c := at(p)
			switch {
			case inq:
				switch {
				case c == '\\' && at(p+1) == 'x' && isHex(at(p+2)) && isHex(at(p+3)):
					cur = append(cur, hex(at(p+2))*16+hex(at(p+3)))
					p += 3
				case c == '\\' && at(p+1) != 0:
					p++
					e := map[byte]byte{'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'a': '\a'}[at(p)]
					if e == 0 {
						e = at(p)
					}
					cur = append(cur, e)
				case c == '"':
					if n := at(p + 1); n != 0 && !isSpace(n) {
						return nil, false
					}
					done = true
				case c == 0:
					return nil, false
				default:
					cur = append(cur, c)
				}
			case insq:
				switch {
				case c == '\\' && at(p+1) == '\'':
					p++
					cur = append(cur, '\'')
				case c == '\'':
					if n := at(p + 1); n != 0 && !isSpace(n) {
						return nil, false
					}
					done = true
				case c == 0:
					return nil, false
				default:
					cur = append(cur, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, c)
				}
			}
			if c != 0 {
				p++
			}
		}
		parts = append(parts, cur)
	}
}

// refuseOwnLibrary is errReservedName when a client's FUNCTION LOAD, DELETE or RESTORE, or
// FCALL or FCALL_RO, would load, delete, replace or call a library or function of redraft's.
// A payload FUNCTION RESTORE cannot read is left to Redis to refuse.
func refuseOwnLibrary(spec *command.Spec, args [][]byte) error {
	var name []byte
	switch spec.Name {
	case "function|load":
		if len(args) > 2 {
			name = libraryNameOf(args[len(args)-1])
		}
	case "function|delete":
		if len(args) > 2 {
			name = args[2]
		}
	case "fcall", "fcall_ro":
		if len(args) > 1 {
			name = args[1]
		}
	case "function|restore":
		if len(args) > 2 {
			libs, _, err := parseFunctionDump(args[2])
			if err != nil && dumpChecksumOK(args[2]) {
				// Redis would take it, and a library it holds could not be checked. A payload
				// whose checksum is wrong is left to Redis, which refuses it in its own words.
				return errUnreadableDump
			}
			for _, l := range libs {
				if ownName(libraryNameOf(l.code)) {
					return errReservedName
				}
			}
		}
	}
	if name != nil && ownName(name) {
		return errReservedName
	}
	return nil
}

// withoutOwnDump is a FUNCTION DUMP reply without redraft's library, its CRC written anew; a
// reply that is not a payload redraft can read is returned as it is.
func withoutOwnDump(v resp.Value) []byte {
	if v.Type != '$' || v.IsNull() {
		return v.Raw
	}
	libs, version, err := parseFunctionDump(v.Str)
	if err != nil {
		return v.Raw
	}
	kept := libs[:0:0]
	for _, l := range libs {
		if !ownName(libraryNameOf(l.code)) {
			kept = append(kept, l)
		}
	}
	if len(kept) == len(libs) {
		return v.Raw
	}
	return resp.AppendBulk(nil, buildFunctionDump(kept, version))
}

// withoutOwnLibrary is a FUNCTION LIST reply without redraft's library.
func withoutOwnLibrary(v resp.Value) []byte {
	if !v.IsArray() {
		return v.Raw
	}
	var kept [][]byte
	for _, lib := range v.Elems {
		if name, _ := libraryFunctions(lib); !ownName(name) {
			kept = append(kept, lib.Raw)
		}
	}
	if len(kept) == len(v.Elems) {
		return v.Raw
	}
	b := resp.AppendArray(nil, len(kept))
	for _, k := range kept {
		b = append(b, k...)
	}
	return b
}

// withoutOwnStats is a FUNCTION STATS reply of a group that holds redraft's library, without
// it: the Lua engine's counts less the library and its functions, and no running_script when
// the function running is redraft's. A reply of another shape is returned as it is.
func withoutOwnStats(v resp.Value) []byte {
	if (v.Type != '*' && v.Type != '%') || len(v.Elems) != 4 {
		return v.Raw
	}
	b := appendHeader(nil, v)
	b = append(b, v.Elems[0].Raw...)
	running := v.Elems[1]
	if own := running.Elems; len(own) >= 2 && string(own[0].Str) == "name" && ownName(own[1].Str) {
		b = resp.AppendNullBulk(b, v.Type == '%')
	} else {
		b = append(b, running.Raw...)
	}
	b = append(b, v.Elems[2].Raw...)
	engines := v.Elems[3]
	b = appendHeader(b, engines)
	for i := 0; i+1 < len(engines.Elems); i += 2 {
		b = append(b, engines.Elems[i].Raw...)
		counts := engines.Elems[i+1]
		if !strings.EqualFold(string(engines.Elems[i].Str), "lua") {
			b = append(b, counts.Raw...)
			continue
		}
		b = appendHeader(b, counts)
		for j := 0; j+1 < len(counts.Elems); j += 2 {
			b = append(b, counts.Elems[j].Raw...)
			n, less := counts.Elems[j+1], int64(0)
			switch string(counts.Elems[j].Str) {
			case "libraries_count":
				less = 1
			case "functions_count":
				less = int64(xdc.LibraryFunctions)
			}
			if n.Type != ':' || less == 0 {
				b = append(b, n.Raw...)
				continue
			}
			b = resp.AppendInt(b, max(n.Int-less, 0))
		}
	}
	return b
}

// appendHeader appends the header of v, an array or map, with as many elements as v has.
func appendHeader(b []byte, v resp.Value) []byte {
	if v.Type == '%' {
		return resp.AppendMap(b, len(v.Elems)/2, true)
	}
	return resp.AppendArray(b, len(v.Elems))
}

// evictSquatters deletes, on every group, each client library that registered a function
// whose name is reserved, and reports whether there was one. Function names are global in
// Redis and a library's code may name its functions anything, which no check of the code
// before FUNCTION LOAD can see; a client library that took the name of one of redraft's
// functions (in a moment it was not loaded, after a FUNCTION FLUSH) would run in its place as
// redraft's internal user. So after every client LOAD or RESTORE the node looks.
func (c *client) evictSquatters() (bool, error) {
	reps, err := c.askGroups(appendCommand(nil, []string{"FUNCTION", "LIST"}), true)
	if err != nil {
		return false, err
	}
	found := false
	for _, r := range reps {
		if r.err != nil || !r.v.IsArray() {
			continue
		}
		for _, lib := range r.v.Elems {
			name, squats := libraryFunctions(lib)
			if name == nil || ownName(name) || !squats {
				continue
			}
			found = true
			if _, err := c.roundTripAs(r.g, appendCommand(nil, []string{"FUNCTION", "DELETE", string(name)}), true); err != nil {
				return true, err
			}
		}
	}
	return found, nil
}

// libraryFunctions reads a FUNCTION LIST entry: the library's name, and whether one of its
// functions has a reserved name.
func libraryFunctions(lib resp.Value) (name []byte, squats bool) {
	for i := 0; i+1 < len(lib.Elems); i += 2 {
		switch string(lib.Elems[i].Str) {
		case "library_name":
			name = lib.Elems[i+1].Str
		case "functions":
			for _, f := range lib.Elems[i+1].Elems {
				for j := 0; j+1 < len(f.Elems); j += 2 {
					if string(f.Elems[j].Str) == "name" && ownName(f.Elems[j+1].Str) {
						squats = true
					}
				}
			}
		}
	}
	return name, squats
}
