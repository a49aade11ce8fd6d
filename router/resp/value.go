package resp

// Value is one parsed reply, pointing into the raw bytes it was parsed from.
type Value struct {
	// Type is the reply's first byte: '+', '-', ':', '$' or '*' (RESP2), or one of RESP3's
	// '_' (null), ',' (double), '#' (boolean), '(' (big number), '=' (verbatim string), '!'
	// (blob error), '%' (map), '~' (set), '>' (push). An attribute ('|') is skipped: the
	// Value is the reply it precedes, with Raw covering both.
	Type byte
	// Str is the text of a status, error, bulk, verbatim string (with its "txt:" prefix),
	// double or big number (nil for a null).
	Str []byte
	// Int is an integer reply's value, a boolean's (1 or 0), or an aggregate's or bulk's
	// length (-1 for a RESP2 null; a map's length counts its pairs).
	Int int64
	// Raw is the whole reply, header and elements included.
	Raw []byte
	// Elems are an array's elements.
	Elems []Value
}

// IsError reports whether v is an error reply (simple or blob).
func (v Value) IsError() bool { return v.Type == '-' || v.Type == '!' }

// IsNull reports whether v is a null: RESP2's null bulk string or null array, RESP3's null.
func (v Value) IsNull() bool { return v.Type == '_' || ((v.Type == '$' || v.Type == '*') && v.Int < 0) }

// IsArray reports whether v is an aggregate whose Elems are its elements in order: an
// array, a set or a push (a map's Elems are its keys and values, alternating).
func (v Value) IsArray() bool { return v.Type == '*' || v.Type == '~' || v.Type == '>' }

// Parse parses the first complete reply in b and returns it and the bytes after it; ok is false
// when b does not start with a complete, valid reply.
func Parse(b []byte) (v Value, rest []byte, ok bool) {
	if len(b) == 0 {
		return v, b, false
	}
	nl := -1
	for i := 1; i < len(b); i++ {
		if b[i] == '\n' {
			nl = i
			break
		}
	}
	if nl < 2 || b[nl-1] != '\r' {
		return v, b, false
	}
	v.Type = b[0]
	body := b[1 : nl-1]
	p := nl + 1
	switch v.Type {
	case '+', '-', ',', '(':
		v.Str = body
	case '_':
		if len(body) != 0 {
			return v, b, false
		}
		v.Int = -1
	case '#':
		switch string(body) {
		case "t":
			v.Int = 1
		case "f":
		default:
			return v, b, false
		}
	case ':':
		n, ok := parseInt(body)
		if !ok {
			return v, b, false
		}
		v.Int = n
	case '$', '=', '!':
		n, ok := parseInt(body)
		if !ok || n < -1 || (n < 0 && v.Type != '$') {
			return v, b, false
		}
		v.Int = n
		if n >= 0 {
			if int64(len(b)-p) < n+2 {
				return v, b, false
			}
			v.Str = b[p : p+int(n)]
			p += int(n) + 2
		}
	case '*', '~', '>', '%', '|':
		n, ok := parseInt(body)
		if !ok || n < -1 || (n < 0 && v.Type != '*') || n > int64(len(b)) {
			return v, b, false
		}
		v.Int = n
		if v.Type == '%' || v.Type == '|' {
			n *= 2
		}
		if n > 0 {
			v.Elems = make([]Value, 0, n)
			rest := b[p:]
			for i := int64(0); i < n; i++ {
				var e Value
				e, rest, ok = Parse(rest)
				if !ok {
					return Value{}, b, false
				}
				v.Elems = append(v.Elems, e)
			}
			p = len(b) - len(rest)
		}
		if v.Type == '|' {
			inner, rest, ok := Parse(b[p:])
			if !ok {
				return Value{}, b, false
			}
			inner.Raw = b[:len(b)-len(rest)]
			return inner, rest, true
		}
	default:
		return v, b, false
	}
	v.Raw = b[:p]
	return v, b[p:], true
}

// Skip returns the length of the first complete reply in b without building Values, or -1.
func Skip(b []byte) int {
	need := 1
	p := 0
	for need > 0 {
		nl := -1
		for i := p + 1; i < len(b); i++ {
			if b[i] == '\n' {
				nl = i
				break
			}
		}
		if nl < 0 || nl < p+2 {
			return -1
		}
		t := b[p]
		body := b[p+1 : nl-1]
		p = nl + 1
		need--
		switch t {
		case '+', '-', ':', '_', ',', '#', '(':
		case '$', '=', '!':
			n, ok := parseInt(body)
			if !ok {
				return -1
			}
			if n >= 0 {
				p += int(n) + 2
				if p > len(b) {
					return -1
				}
			}
		case '*', '~', '>', '%', '|':
			n, ok := parseInt(body)
			if !ok {
				return -1
			}
			if t == '%' || t == '|' {
				n *= 2
			}
			if t == '|' {
				need++ // the reply the attribute describes
			}
			if n > 0 {
				need += int(n)
			}
		default:
			return -1
		}
	}
	return p
}
