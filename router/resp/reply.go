package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// ErrBadReply is a reply from a backend that is not valid RESP2 or RESP3.
var ErrBadReply = errors.New("malformed reply from backend")

// ReadReply reads one complete RESP2 or RESP3 reply (nested aggregates included; an
// attribute counts with the reply it precedes) from br and appends its raw bytes to dst.
func ReadReply(br *bufio.Reader, dst []byte) ([]byte, error) {
	remaining := 1
	for remaining > 0 {
		start := len(dst)
		line, err := br.ReadSlice('\n')
		gathered := false
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer (a long status or error): gather it in dst.
			dst = append(dst, line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				dst = append(dst, line...)
			}
			line, gathered = dst[start:], true
		}
		if err != nil {
			return dst, err
		}
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return dst, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
		if !gathered {
			dst = append(dst, line...)
		}
		switch line[0] {
		case '+', '-', ':', '_', ',', '#', '(':
			remaining--
		case '$', '=', '!':
			n, ok := parseInt(line[1 : len(line)-2])
			if !ok || n < -1 || (n < 0 && line[0] != '$') {
				return dst, fmt.Errorf("%w: bulk length %q", ErrBadReply, line)
			}
			remaining--
			if n >= 0 {
				dst, err = readN(br, dst, int(n)+2)
				if err != nil {
					return dst, err
				}
			}
		case '*', '~', '>', '%', '|':
			n, ok := parseInt(line[1 : len(line)-2])
			if !ok || n < -1 || (n < 0 && line[0] != '*') {
				return dst, fmt.Errorf("%w: aggregate length %q", ErrBadReply, line)
			}
			if line[0] != '|' {
				remaining-- // an attribute precedes the reply it describes
			}
			if line[0] == '%' || line[0] == '|' {
				n *= 2
			}
			if n > 0 {
				remaining += int(n)
			}
		default:
			return dst, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
	}
	return dst, nil
}

func readN(br *bufio.Reader, dst []byte, n int) ([]byte, error) {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), len(dst)+n+len(dst)/2)
		copy(nd, dst)
		dst = nd
	}
	start := len(dst)
	dst = dst[:start+n]
	_, err := io.ReadFull(br, dst[start:])
	return dst, err
}
