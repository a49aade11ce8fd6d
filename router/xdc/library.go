package xdc

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The replication scripts are one Redis function library (FUNCTION LOAD, then FCALL): its
// definitions (a few hundred lines of Lua: the stamps, the element rules, the effect
// recorders) run once when the library loads, not on every call as an EVAL script's do, and
// the server keeps the library in its RDB and AOF and hands it to its replicas, so a restarted
// or promoted master still has it. The library's name and its functions' names carry a digest
// of its source, so that two versions of redraft (a rolling upgrade) load side by side instead
// of replacing each other's: a node calls only the functions of its own version.
//
// The functions read and set a few library-level variables (the clock at the call, the slot's
// metadata hash, the pull hash, the stamp cache); begin and beginApply reset them at
// every call, since a library's state outlives its calls.

// libraryBody is the library without its name (the digest is taken over it).
const libraryBody = `
local hardCap = 10
local nowms, meta, pull
-- caps maps an outbox bound (ARGV) to its MAXLEN cap as a string, hardCap times the bound:
-- a handful of entries (one per bound a node configures), kept across calls.
local caps = {}
` + stampLua + elemLua + elemArgsLua + writeDefsLua + applyDefsLua + `
local function begin()
  local t = redis.call('TIME')
  nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  stamps, meta, pull = {}, nil, nil
end
local function beginApply()
  stamps, meta, pull = {}, nil, nil
end
-- WRITE: one write or unit (writeDefsLua).
redis.register_function('@write', function(KEYS, ARGV)
  begin()
  return writeOne(KEYS, ARGV)
end)
-- APPLY: one entry (applyDefsLua).
redis.register_function('@apply', function(KEYS, ARGV)
  beginApply()
  meta, pull = KEYS[#KEYS - 3], KEYS[#KEYS - 2]
  local cmds = readCmds(ARGV, 7, tonumber(ARGV[4]))
  local r, nerr, first, sup, con = applyEntry(ARGV[1], ARGV[2], ARGV[3], ARGV[6], cmds, ARGV[5], KEYS[#KEYS - 1], KEYS[#KEYS])
  if r == 'applied' then return {r, nerr, first, sup, con} end
  return r
end)
-- Batch APPLY: many slots' entries from one DC in one call, the receiving node's common case.
-- KEYS: every effect's key, then per batch its slot's metadata hash, pull hash, copy lock and
-- inbox. ARGV: source DC, the copy lock's value this caller holds, the number of batches, then
-- per batch the id of the entry before its first ("" not to check) and its number of entries,
-- then per entry its id, stamp ts, number of effects and effects (argc, argv...). A batch's
-- entries apply in order until one is refused (TRYAGAIN, GAP, a bad id); the batches are
-- independent. It answers per batch {entries applied or skipped, the refusal ("" for none),
-- failed effects, first failure, superseded, conflicts}, or only the number of entries when
-- there is nothing else to say (the common case: no table to build and encode).
redis.register_function('@apply_batch', function(KEYS, ARGV)
  beginApply()
  local src, lockv, nb = ARGV[1], ARGV[2], tonumber(ARGV[3])
  local kb, i, out = #KEYS - 4 * nb, 4, {}
  for b = 1, nb do
    meta, pull = KEYS[kb + 1], KEYS[kb + 2]
    local lock, inbox = KEYS[kb + 3], KEYS[kb + 4]
    kb = kb + 4
    local prev, ne = ARGV[i], tonumber(ARGV[i + 1])
    i = i + 2
    local done, refused, nerr, first, sup, con = 0, '', 0, '', 0, 0
    for _ = 1, ne do
      local id, ts, nc = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
      local cmds
      cmds, i = readCmds(ARGV, i + 3, nc)
      if refused == '' then
        local r, ne, fe, su, co = applyEntry(src, id, prev, ts, cmds, lockv, lock, inbox)
        if type(r) == 'table' and r.err then
          refused = r.err
        else
          done, prev = done + 1, id
          if r == 'applied' then
            nerr, sup, con = nerr + ne, sup + su, con + co
            if first == '' then first = fe end
          end
        end
      end
    end
    if refused == '' and nerr == 0 and sup == 0 and con == 0 then
      out[b] = done
    else
      out[b] = {done, refused, nerr, first, sup, con}
    end
  end
  return out
end)
` + applyLogLua

// LibraryPrefix starts the name of every version of redraft's library.
const LibraryPrefix = "redraft_"

// libraryName is LibraryPrefix and the first 12 hex digits of libraryBody's SHA1.
var libraryName = func() string {
	sum := sha1.Sum([]byte(libraryBody))
	return LibraryPrefix + hex.EncodeToString(sum[:6])
}()

// The functions of the library, for FCALL: each is libraryName and its role.
var (
	// WriteFunc is the WRITE function: a write (or unit) applied and recorded in the slot's
	// outbox atomically (writeDefsLua).
	WriteFunc = libraryName + "_write"
	// ApplyFunc is the APPLY function for one entry.
	ApplyFunc = libraryName + "_apply"
	// ApplyBatchFunc is the batch APPLY function (many slots' entries from one DC).
	ApplyBatchFunc = libraryName + "_apply_batch"
)

// LibraryFunctions is how many functions the library registers.
var LibraryFunctions = strings.Count(libraryBody, "redis.register_function(")

// library is the source FUNCTION LOAD takes.
var library = "#!lua name=" + libraryName + "\n" + strings.ReplaceAll(libraryBody, "'@", "'"+libraryName+"_")

// Library returns the Lua source of the function library, for FUNCTION LOAD.
func Library() string { return library }

// FuncMissing is how a server answers FCALL of a function it does not have (a backend that
// lost the library: a new server without persistence, FUNCTION FLUSH on the backend itself).
const FuncMissing = "ERR Function not found"

// funcMissingReply is FuncMissing as a raw error reply starts.
var funcMissingReply = []byte("-" + FuncMissing)

// FuncMissingReply reports whether raw, a raw reply, is FuncMissing: the server lacks the
// library, which the caller loads before calling again.
func FuncMissingReply(raw []byte) bool { return bytes.HasPrefix(raw, funcMissingReply) }

// isFuncMissing is FuncMissingReply for an error's text (go-redis's errors).
func isFuncMissing(msg string) bool { return strings.HasPrefix(msg, FuncMissing) }

// LoadLibrary loads the library on c's server. It replaces a library of the same name: the
// name is the source's digest, so that is this code again, or a library that took the name
// with other code (which a client cannot load through redraft: router/ownlibrary.go).
func LoadLibrary(ctx context.Context, c Doer) error {
	return loaded(c.Do(ctx, "FUNCTION", "LOAD", "REPLACE", library).Err())
}

// loaded is err, FUNCTION LOAD's of the library, with "already exists" as success (as good
// as loading it: the library's name is its source's digest).
func loaded(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "ERR Library '"+libraryName+"' already exists") {
		return nil
	}
	return err
}

// FCall calls fn, a function of the library, on c's server, loading the library first when
// the server does not have it.
func FCall(ctx context.Context, c Doer, fn string, keys []string, args ...any) *redis.Cmd {
	call := make([]any, 0, 3+len(keys)+len(args))
	call = append(call, "FCALL", fn, len(keys))
	for _, k := range keys {
		call = append(call, k)
	}
	call = append(call, args...)
	r := c.Do(ctx, call...)
	if err := r.Err(); err != nil && isFuncMissing(err.Error()) {
		if err := LoadLibrary(ctx, c); err != nil {
			return r
		}
		r = c.Do(ctx, call...)
	}
	return r
}
