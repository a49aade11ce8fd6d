package resp

// parseInline parses a telnet-style request line, split as redis-server's sdssplitargs does.
func (r *Reader) parseInline() (cmd Command, done, skip bool, err error) {
	start := r.r
	nl := r.line(start)
	if nl < 0 {
		if r.w-start > MaxInline {
			return cmd, false, false, errBigInline
		}
		r.need = r.w - start + 1
		return cmd, false, false, nil
	}
	if nl-start > MaxInline {
		return cmd, false, false, errBigInline
	}
	line := r.buf[start:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	r.r = nl + 1
	r.need = 0
	args, err := r.splitArgs(line)
	if err != nil {
		return cmd, false, false, err
	}
	if len(args) == 0 {
		return cmd, true, true, nil
	}
	out := r.inline[:0]
	out = AppendArray(out, len(args))
	for _, a := range args {
		out = AppendBulk(out, a)
	}
	r.inline = out
	return Command{Args: args, Raw: out}, true, false, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'
}

// splitArgs follows sdssplitargs: spaces separate arguments; "double quotes" take \n \r \t \b
// \a \xHH escapes; 'single quotes' take \'; a closing quote must be followed by a space.
func (r *Reader) splitArgs(line []byte) ([][]byte, error) {
	sc := r.scratch[:0]
	type span struct{ from, to int }
	var spans [16]span
	sp := spans[:0]
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			break
		}
		from := len(sc)
		inq, insq := false, false
	arg:
		for {
			if i >= len(line) {
				if inq || insq {
					return nil, errQuotes
				}
				break
			}
			c := line[i]
			switch {
			case inq:
				if c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]) {
					sc = append(sc, hexVal(line[i+2])<<4|hexVal(line[i+3]))
					i += 3
				} else if c == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						sc = append(sc, '\n')
					case 'r':
						sc = append(sc, '\r')
					case 't':
						sc = append(sc, '\t')
					case 'b':
						sc = append(sc, '\b')
					case 'a':
						sc = append(sc, '\a')
					default:
						sc = append(sc, line[i])
					}
				} else if c == '"' {
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, errQuotes
					}
					i++
					break arg
				} else {
					sc = append(sc, c)
				}
			case insq:
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					i++
					sc = append(sc, '\'')
				} else if c == '\'' {
					if i+1 < len(line) && !isSpace(line[i+1]) {
						return nil, errQuotes
					}
					i++
					break arg
				} else {
					sc = append(sc, c)
				}
			default:
				switch {
				case isSpace(c):
					break arg
				case c == '"':
					inq = true
				case c == '\'':
					insq = true
				default:
					sc = append(sc, c)
				}
			}
			i++
		}
		sp = append(sp, span{from, len(sc)})
	}
	r.scratch = sc
	args := r.args[:0]
	for _, s := range sp {
		args = append(args, sc[s.from:s.to:s.to])
	}
	r.args = args
	return args, nil
}
