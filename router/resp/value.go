package resp

// Value is one parsed reply, pointing into the raw bytes it was parsed from.
type Value struct {
	// Type is the reply's first byte: '+', '-', ':', '$' or '*'.
	Type byte
	// Str is the text of a status, error or bulk string (nil for a null bulk or array).
	Str []byte
	// Int is an integer reply's value, or an array's or bulk's length (-1 for null).
	Int int64
	// Raw is the whole reply, header and elements included.
	Raw []byte
	// Elems are an array's elements.
	Elems []Value
}

// IsError reports whether v is an error reply.
func (v Value) IsError() bool { return v.Type == '-' }

// IsNull reports whether v is a null bulk string or null array.
func (v Value) IsNull() bool { return (v.Type == '$' || v.Type == '*') && v.Int < 0 }

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
	case '+', '-':
		v.Str = body
	case ':':
		n, ok := parseInt(body)
		if !ok {
			return v, b, false
		}
		v.Int = n
	case '$':
		n, ok := parseInt(body)
		if !ok || n < -1 {
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
	case '*':
		n, ok := parseInt(body)
		if !ok || n < -1 || n > int64(len(b)) {
			return v, b, false
		}
		v.Int = n
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
		case '+', '-', ':':
		case '$':
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
		case '*':
			n, ok := parseInt(body)
			if !ok {
				return -1
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
