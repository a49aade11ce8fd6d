package router

import (
	"bytes"
	"sort"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

// Redis functions (FUNCTION ...). A library must exist on every group of the DC, since FCALL
// runs on the group of its keys' slot: the changing subcommands go to every group, the reading
// ones answer from the groups and say which group disagrees. They change the local DC only:
// function libraries are not per-slot data, so the cross-DC outboxes do not carry them; with
// several DCs, run the same FUNCTION LOAD through a node of each DC (docs/commands.md).

func registerFunctions() {
	for _, sub := range []string{"load", "delete", "flush", "restore"} {
		handle("function|"+sub, cmdFunctionChange)
	}
	handle("function|kill", cmdFunctionKill)
	handle("function|list", cmdFunctionList)
	handle("function|dump", cmdFunctionDump)
	handle("function|stats", cmdFunctionStats)
}

// fixFunctions tells the client how to make the groups' libraries equal again.
const fixFunctions = "the groups' function libraries differ: make them equal through redraft (FUNCTION FLUSH, then FUNCTION LOAD or RESTORE)"

// cmdFunctionChange sends FUNCTION LOAD, DELETE, FLUSH or RESTORE to every group of the DC as
// redraft's internal user (the client user may not change functions). When every group
// answers the same, that is the answer, errors included (Redis's own words); otherwise the
// error names each group's answer, since the call then took effect on some groups only.
// After FUNCTION FLUSH or RESTORE redraft's own library (the replication functions,
// xdc.Library) is loaded again on every group, so replicated writes keep working; after LOAD
// or RESTORE a client library that registered a function under a reserved name is deleted
// again and the call refused (evictSquatters).
func cmdFunctionChange(c *client, spec *command.Spec, cmd resp.Command) {
	if err := refuseOwnLibrary(spec, cmd.Args); err != nil {
		c.replyErr(err)
		return
	}
	if spec.Name == "function|delete" {
		c.allSame(cmd.Raw, upperName(spec.Name), fixFunctions)
		return
	}
	reps, err := c.askGroups(withOwnLibrary(spec, cmd), true)
	squat := false
	if err == nil && spec.Name != "function|flush" {
		squat, err = c.evictSquatters()
	}
	if err == nil && (squat || spec.Name != "function|load") {
		_, err = c.askGroups(rawLoadLibrary, true) // REPLACE: a library of that name with other code is overwritten
	}
	switch {
	case err != nil:
		c.replyErr(err)
	case squat:
		c.replyErr(errReservedName)
	default:
		c.replySame(reps, upperName(spec.Name), fixFunctions)
	}
}

// withOwnLibrary is the request a FUNCTION FLUSH, or a FUNCTION RESTORE with the FLUSH policy,
// goes to the groups as: one FUNCTION RESTORE ... FLUSH whose payload holds redraft's library
// besides the client's, so that no moment passes on a group without it. Sent as they came,
// the flush left the group without redraft's library until the node loaded it again, a round
// trip later; a client library loaded meanwhile (or restored by that very RESTORE) could
// register the WRITE function's name, and every replicated write in that window ran the
// client's code as redraft's internal user. Other requests go as they are (a payload redraft
// cannot read is refused or left to Redis by refuseOwnLibrary).
func withOwnLibrary(spec *command.Spec, cmd resp.Command) []byte {
	a := cmd.Args
	switch {
	case spec.Name == "function|flush" && (len(a) == 2 || len(a) == 3 && (bytes.EqualFold(a[2], []byte("ASYNC")) || bytes.EqualFold(a[2], []byte("SYNC")))):
		return appendCommand(nil, []string{"FUNCTION", "RESTORE", string(buildFunctionDump([]dumpLibrary{ownDumpLibrary()}, ownDumpVersion)), "FLUSH"})
	case spec.Name == "function|restore" && len(a) == 4 && bytes.EqualFold(a[3], []byte("FLUSH")):
		libs, version, err := parseFunctionDump(a[2])
		if err != nil {
			return cmd.Raw
		}
		return appendCommand(nil, []string{"FUNCTION", "RESTORE", string(buildFunctionDump(append(libs, ownDumpLibrary()), version)), "FLUSH"})
	}
	return cmd.Raw
}

// cmdFunctionKill stops a running function on whichever group runs one: OK when one group
// stopped one, Redis's NOTBUSY when none runs one.
func cmdFunctionKill(c *client, spec *command.Spec, cmd resp.Command) {
	reps, ok := c.askEvery(cmd.Raw, true)
	if !ok {
		return
	}
	for _, r := range reps {
		if r.v.Type == '+' {
			c.reply(r.raw)
			return
		}
	}
	if sameReplies(reps) {
		c.reply(reps[0].raw)
		return
	}
	c.replyErr(errDisagree(upperName(spec.Name), "retry", reps))
}

// cmdFunctionList answers the first group's FUNCTION LIST when every group holds the same
// libraries. Redis lists libraries and their functions in hash-table order, which differs
// between servers, so the comparison ignores order.
func cmdFunctionList(c *client, spec *command.Spec, cmd resp.Command) {
	reps, ok := c.askEvery(cmd.Raw, false)
	if !ok {
		return
	}
	if err := sameLibraries(upperName(spec.Name), reps); err != nil {
		c.replyErr(err)
		return
	}
	c.reply(withoutOwnLibrary(reps[0].v))
}

// cmdFunctionDump answers the first group's FUNCTION DUMP when every group holds the same
// libraries (compared with FUNCTION LIST WITHCODE: the payload's order differs by server).
func cmdFunctionDump(c *client, spec *command.Spec, cmd resp.Command) {
	dumps, ok := c.askEvery(cmd.Raw, false)
	if !ok {
		return
	}
	if !sameReplies(dumps) {
		lists, err := c.askGroups(appendCommand(nil, []string{"FUNCTION", "LIST", "WITHCODE"}), false)
		if err != nil {
			c.replyErr(err)
			return
		}
		if err := sameLibraries(upperName(spec.Name), lists); err != nil {
			c.replyErr(err)
			return
		}
	}
	c.reply(withoutOwnDump(dumps[0].v))
}

// cmdFunctionStats answers FUNCTION STATS: the engines' counts when every group agrees on
// them, and the function running on any group (the first one found) as running_script;
// both without redraft's library, which it loads first where it is missing.
func cmdFunctionStats(c *client, spec *command.Spec, cmd resp.Command) {
	if _, err := c.askGroups(rawLoadLibrary, true); err != nil { // so that every group holds it
		c.replyErr(err)
		return
	}
	reps, ok := c.askEvery(cmd.Raw, false)
	if !ok {
		return
	}
	for i := range reps {
		reps[i].raw = withoutOwnStats(reps[i].v)
		reps[i].v, _, _ = resp.Parse(reps[i].raw)
	}
	if sameReplies(reps) {
		c.reply(reps[0].raw)
		return
	}
	running := -1
	for i, r := range reps {
		if (r.v.Type != '*' && r.v.Type != '%') || len(r.v.Elems) != 4 {
			c.replyErr(errDisagree(upperName(spec.Name), "retry", reps))
			return
		}
		if !bytes.Equal(r.v.Elems[3].Raw, reps[0].v.Elems[3].Raw) {
			c.replyErr(errDisagree(upperName(spec.Name), fixFunctions, reps))
			return
		}
		if running < 0 && !r.v.Elems[1].IsNull() {
			running = i
		}
	}
	if running < 0 {
		running = 0
	}
	b := resp.AppendMap(nil, 2, c.r3)
	b = append(b, reps[0].v.Elems[0].Raw...)
	b = append(b, reps[running].v.Elems[1].Raw...)
	b = append(b, reps[0].v.Elems[2].Raw...)
	b = append(b, reps[0].v.Elems[3].Raw...)
	c.reply(b)
}

// sameLibraries checks that every group answered FUNCTION LIST with the same libraries, in
// any order; an error reply that every group gives alike passes (the caller answers it).
func sameLibraries(what string, reps []groupReply) error {
	if err := firstFailure(reps); err != nil {
		return err
	}
	if sameReplies(reps) {
		return nil
	}
	first := canonicalLibraries(reps[0].v)
	for _, r := range reps[1:] {
		if r.v.Type != reps[0].v.Type || !bytes.Equal(canonicalLibraries(r.v), first) {
			return errDisagree(what, fixFunctions, reps)
		}
	}
	return nil
}

// canonicalLibraries renders a FUNCTION LIST reply independent of order: each library's
// functions sorted, then the libraries sorted.
func canonicalLibraries(v resp.Value) []byte {
	if !v.IsArray() {
		return v.Raw
	}
	libs := make([][]byte, 0, len(v.Elems))
	for _, lib := range v.Elems {
		var b []byte
		for i := 0; i+1 < len(lib.Elems); i += 2 {
			b = append(b, lib.Elems[i].Raw...)
			val := lib.Elems[i+1]
			if string(lib.Elems[i].Str) != "functions" || !val.IsArray() {
				b = append(b, val.Raw...)
				continue
			}
			fs := make([][]byte, len(val.Elems))
			for j, f := range val.Elems {
				fs[j] = f.Raw
			}
			sort.Slice(fs, func(a, b int) bool { return bytes.Compare(fs[a], fs[b]) < 0 })
			b = append(b, bytes.Join(fs, nil)...)
		}
		if lib.Type != '*' && lib.Type != '%' {
			b = lib.Raw
		}
		libs = append(libs, b)
	}
	sort.Slice(libs, func(a, b int) bool { return bytes.Compare(libs[a], libs[b]) < 0 })
	return bytes.Join(libs, []byte{0})
}

// upperName renders a spec name as Redis writes commands in errors: "FUNCTION LOAD".
func upperName(name string) string {
	b := bytes.ToUpper([]byte(name))
	return string(bytes.ReplaceAll(b, []byte("|"), []byte(" ")))
}
