package resp

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the request reader: it must never panic, must honour its
// limits, and every command it returns must re-encode to RESP that parses to the same args.
func FuzzReader(f *testing.F) {
	seeds := []string{
		"*1\r\n$4\r\nPING\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
		"PING\r\nECHO \"a\\x00b\" 'c\\'d'\r\n",
		"*-1\r\n*0\r\n\r\n",
		"*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n",
		"*1\r\n$3\r\nab",
		"*99\r\n$1\r\na\r\n",
		"*1\r\n+x\r\n",
		"\"unterminated\r\n",
		"*1\r\n$-1\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint8(5))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		rd := NewReader(&chunkReader{b: data, n: int(chunk%64) + 1}, 1<<16, 64)
		for i := 0; i < 10000; i++ {
			cmd, ok, err := rd.Next()
			if err != nil {
				return
			}
			if !ok {
				if rd.Fill() != nil {
					return
				}
				continue
			}
			if len(cmd.Args) == 0 || len(cmd.Args) > 64 {
				t.Fatalf("bad arg count %d", len(cmd.Args))
			}
			var enc []byte
			enc = AppendArray(enc, len(cmd.Args))
			for _, a := range cmd.Args {
				if len(a) > 1<<16 {
					t.Fatalf("argument of %d bytes over the limit", len(a))
				}
				enc = AppendBulk(enc, a)
			}
			// Raw is what gets forwarded: it must parse to the same arguments.
			again, err := parseOne(cmd.Raw)
			if err != nil || len(again) != len(cmd.Args) {
				t.Fatalf("Raw %q does not re-parse: %v", cmd.Raw, err)
			}
			for j, a := range cmd.Args {
				if again[j] != string(a) {
					t.Fatalf("Raw %q parses to %q, want %q", cmd.Raw, again, enc)
				}
			}
		}
	})
}

// FuzzReadReply checks the backend reply reader never panics and agrees with Skip.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "$-1\r\n", "*1\r\n*1\r\n-e\r\n", "$5\r\nab"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		got, err := ReadReply(br, nil)
		if err != nil {
			return
		}
		if n := Skip(got); n != len(got) {
			t.Fatalf("Skip(%q) = %d, want %d", got, n, len(got))
		}
	})
}
