package router

import (
	"encoding/binary"
	"errors"
	"hash/crc64"
	"sync"

	"github.com/redraft/redraft/router/xdc"
)

// FUNCTION DUMP payloads, read and written as Redis 7 does (functions.c, rdb.c): for each
// library the opcode 0xF5 and its code as an RDB string, then the 2-byte RDB version and the
// CRC64 (Jones) of everything before it, both little endian. redraft reads them to keep its
// own library out of what clients dump and restore (ownlibrary.go).

// rdbOpcodeFunction2 starts a library in a payload (RDB_OPCODE_FUNCTION2).
const rdbOpcodeFunction2 = 0xF5

// dumpFooterLen is the RDB version and the CRC64.
const dumpFooterLen = 2 + 8

// crcJones is Redis's CRC64 table (the Jones polynomial, reflected).
var crcJones = crc64.MakeTable(0x95AC9329AC4BC9B5)

// redisCRC64 is Redis's crc64(0, b): no initial or final inversion, unlike hash/crc64's.
func redisCRC64(b []byte) uint64 { return ^crc64.Update(^uint64(0), crcJones, b) }

// errBadDump is a payload redraft cannot read; Redis itself answers such a payload.
var errBadDump = errors.New("malformed function payload")

// dumpLibrary is one library of a payload: its bytes there (opcode included) and its code.
type dumpLibrary struct {
	raw  []byte
	code []byte
}

// parseFunctionDump splits a FUNCTION DUMP payload into its libraries and its RDB version,
// checking the CRC.
func parseFunctionDump(p []byte) (libs []dumpLibrary, version []byte, err error) {
	if len(p) < dumpFooterLen {
		return nil, nil, errBadDump
	}
	body := p[:len(p)-8]
	if redisCRC64(body) != binary.LittleEndian.Uint64(p[len(p)-8:]) {
		return nil, nil, errBadDump
	}
	version = p[len(p)-dumpFooterLen : len(p)-8]
	rest := p[:len(p)-dumpFooterLen]
	for len(rest) > 0 {
		if rest[0] != rdbOpcodeFunction2 {
			return nil, nil, errBadDump
		}
		code, n, err := readRDBString(rest[1:])
		if err != nil {
			return nil, nil, err
		}
		libs = append(libs, dumpLibrary{raw: rest[:1+n], code: code})
		rest = rest[1+n:]
	}
	return libs, version, nil
}

// dumpChecksumOK reports whether p ends with a version and the CRC64 of the rest, as Redis
// checks a payload before it reads any of it (verifyDumpPayload).
func dumpChecksumOK(p []byte) bool {
	return len(p) >= dumpFooterLen && redisCRC64(p[:len(p)-8]) == binary.LittleEndian.Uint64(p[len(p)-8:])
}

// buildFunctionDump writes a payload of libs with the given RDB version.
func buildFunctionDump(libs []dumpLibrary, version []byte) []byte {
	var b []byte
	for _, l := range libs {
		b = append(b, l.raw...)
	}
	b = append(b, version...)
	return binary.LittleEndian.AppendUint64(b, redisCRC64(b))
}

// ownDumpVersion is the RDB version of a payload of redraft's library alone: Redis 7.0's (10),
// which every Redis 7 restores (it refuses only versions above its own).
var ownDumpVersion = []byte{10, 0}

// ownDumpLibrary is redraft's library (xdc.Library) as a library of a payload: its code as a
// plain RDB string.
var ownDumpLibrary = sync.OnceValue(func() dumpLibrary {
	code := []byte(xdc.Library())
	return dumpLibrary{raw: appendRDBString([]byte{rdbOpcodeFunction2}, code), code: code}
})

// appendRDBString appends s as an uncompressed RDB string (rdbSaveRawString): its length in
// RDB's length encoding, then its bytes.
func appendRDBString(b, s []byte) []byte {
	switch n := uint64(len(s)); {
	case n < 1<<6:
		b = append(b, byte(n))
	case n < 1<<14:
		b = append(b, byte(0x40|n>>8), byte(n))
	case n <= 0xFFFFFFFF:
		b = binary.BigEndian.AppendUint32(append(b, 0x80), uint32(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x81), n)
	}
	return append(b, s...)
}

// readRDBString reads an RDB string (rdbGenericLoadStringObject): plain or LZF-compressed
// (integer encodings never start a library's code, which starts with "#!"). It returns the
// string and how many bytes it took.
func readRDBString(b []byte) ([]byte, int, error) {
	if len(b) == 0 {
		return nil, 0, errBadDump
	}
	if b[0]>>6 == 3 {
		if b[0]&0x3F != 3 { // RDB_ENC_LZF
			return nil, 0, errBadDump
		}
		clen, n1, err := readRDBLen(b[1:])
		if err != nil {
			return nil, 0, err
		}
		ulen, n2, err := readRDBLen(b[1+n1:])
		if err != nil {
			return nil, 0, err
		}
		start := 1 + n1 + n2
		if clen > uint64(len(b)-start) || ulen > 1<<29 {
			return nil, 0, errBadDump
		}
		out, err := lzfDecompress(b[start:start+int(clen)], int(ulen))
		return out, start + int(clen), err
	}
	l, n, err := readRDBLen(b)
	if err != nil {
		return nil, 0, err
	}
	if l > uint64(len(b)-n) {
		return nil, 0, errBadDump
	}
	return b[n : n+int(l)], n + int(l), nil
}

// readRDBLen reads an RDB length (rdbLoadLenByRef) and how many bytes it took.
func readRDBLen(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, errBadDump
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0] & 0x3F), 1, nil
	case 1:
		if len(b) < 2 {
			return 0, 0, errBadDump
		}
		return uint64(b[0]&0x3F)<<8 | uint64(b[1]), 2, nil
	}
	switch {
	case b[0] == 0x80 && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:5])), 5, nil
	case b[0] == 0x81 && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:9]), 9, nil
	}
	return 0, 0, errBadDump
}

// lzfDecompress expands LZF data (liblzf's lzf_decompress) to exactly n bytes. No Go LZF
// package is maintained well enough to take on for these few lines.
func lzfDecompress(in []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for i := 0; i < len(in); {
		ctrl := int(in[i])
		i++
		if ctrl < 32 { // a literal run of ctrl+1 bytes
			if i+ctrl+1 > len(in) || len(out)+ctrl+1 > n {
				return nil, errBadDump
			}
			out = append(out, in[i:i+ctrl+1]...)
			i += ctrl + 1
			continue
		}
		length := ctrl >> 5 // a back reference
		if length == 7 {
			if i >= len(in) {
				return nil, errBadDump
			}
			length += int(in[i])
			i++
		}
		if i >= len(in) {
			return nil, errBadDump
		}
		ref := len(out) - (ctrl&0x1F)<<8 - int(in[i]) - 1
		i++
		length += 2
		if ref < 0 || len(out)+length > n {
			return nil, errBadDump
		}
		for k := 0; k < length; k++ { // byte by byte: the reference may overlap the output
			out = append(out, out[ref+k])
		}
	}
	if len(out) != n {
		return nil, errBadDump
	}
	return out, nil
}
