package router

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/match"

	"github.com/redraft/redraft/router/command"
	"github.com/redraft/redraft/router/resp"
)

func registerInfo() {
	handle("info", cmdInfo)
	handle("command", cmdCommand)
	handle("command|count", func(c *client, _ *command.Spec, _ resp.Command) {
		n := len(command.Served())
		c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, int64(n)) })
	})
	handle("command|list", func(c *client, _ *command.Spec, cmd resp.Command) {
		names, err := commandList(cmd.Args)
		if err != nil {
			c.replyErr(err)
			return
		}
		c.replyFunc(func(b []byte) []byte {
			b = resp.AppendArray(b, len(names))
			for _, n := range names {
				b = resp.AppendBulkString(b, n)
			}
			return b
		})
	})
	handle("command|info", func(c *client, _ *command.Spec, cmd resp.Command) {
		names := cmd.Args[2:]
		c.replyFunc(func(b []byte) []byte {
			if len(names) == 0 {
				return appendAllInfo(b, c.r3)
			}
			b = resp.AppendArray(b, len(names))
			for _, n := range names {
				b = command.AppendInfo(b, string(n), c.r3)
			}
			return b
		})
	})
	handle("command|docs", cmdCommandDocs)
	handle("command|getkeys", func(c *client, _ *command.Spec, cmd resp.Command) {
		args := cmd.Args[2:]
		spec := command.Lookup(args)
		if spec == nil {
			c.replyErr(errorf("ERR Invalid command specified"))
			return
		}
		if !spec.CheckArity(len(args)) {
			c.replyErr(errorf("ERR Invalid number of arguments specified for command"))
			return
		}
		keys := spec.Keys(args, nil)
		if len(keys) == 0 {
			c.replyErr(errorf("ERR The command has no key arguments"))
			return
		}
		c.replyFunc(func(b []byte) []byte {
			b = resp.AppendArray(b, len(keys))
			for _, k := range keys {
				b = resp.AppendBulk(b, args[k])
			}
			return b
		})
	})
	handle("cluster|keyslot", func(c *client, _ *command.Spec, cmd resp.Command) {
		sl := command.Slot(cmd.Args[2])
		c.replyFunc(func(b []byte) []byte { return resp.AppendInt(b, int64(sl)) })
	})
	handle("cluster|info", cmdClusterInfo)
}

func cmdCommand(c *client, _ *command.Spec, cmd resp.Command) {
	if len(cmd.Args) > 1 {
		c.replyErr(errorf("ERR unknown subcommand '%s'. Try COMMAND HELP.", printable(cmd.Args[1])))
		return
	}
	c.replyFunc(func(b []byte) []byte { return appendAllInfo(b, c.r3) })
}

func appendAllInfo(b []byte, r3 bool) []byte {
	names := command.Served()
	b = resp.AppendArray(b, len(names))
	for _, n := range names {
		b = command.AppendInfo(b, n, r3)
	}
	return b
}

func cmdCommandDocs(c *client, _ *command.Spec, cmd resp.Command) {
	names := command.Served()
	if len(cmd.Args) > 2 {
		names = names[:0:0]
		for _, n := range cmd.Args[2:] {
			names = append(names, strings.ToLower(string(n)))
		}
	}
	c.replyFunc(func(b []byte) []byte {
		var body []byte
		n := 0
		for _, name := range names {
			var ok bool
			if body, ok = command.AppendDocs(body, name, c.r3); ok {
				n++
			}
		}
		b = resp.AppendMap(b, n, c.r3)
		return append(b, body...)
	})
}

// cmdInfo answers the node's own sections (server, clients, stats, replication, cluster) and
// those that describe the data from the DC's groups (memory, the data counters of stats,
// keyspace), in Redis's order; default and all give every section.
func cmdInfo(c *client, _ *command.Spec, cmd resp.Command) {
	want := map[string]bool{}
	for _, a := range cmd.Args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b strings.Builder
	s := c.s
	st := s.Stats()
	if all || want["server"] {
		up := time.Since(s.start)
		port := 0
		if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
			port = a.Port
		}
		fmt.Fprintf(&b, "# Server\r\nredis_version:%s\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nos:%s %s\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\ngo_version:%s\r\nprocess_id:%d\r\nprocess_supervised:no\r\nrun_id:%s\r\ntcp_port:%d\r\nserver_time_usec:%d\r\nuptime_in_seconds:%d\r\nuptime_in_days:%d\r\nhz:10\r\nconfigured_hz:10\r\nexecutable:%s\r\nconfig_file:\r\nredraft_version:%s\r\nredraft_node_id:%s\r\nredraft_datacenter:%s\r\n\r\n",
			redisVersion, runtime.GOOS, runtime.GOARCH, runtime.Version(), os.Getpid(), s.runID(), port, time.Now().UnixMicro(),
			int(up.Seconds()), int(up.Hours()/24), executable(), s.cfg.Version, s.cfg.NodeID, s.cfg.DC)
	}
	if all || want["clients"] {
		blocked, err := c.blockedClients()
		if err != nil {
			c.replyErr(err)
			return
		}
		fmt.Fprintf(&b, "# Clients\r\nconnected_clients:%d\r\ncluster_connections:0\r\nmaxclients:10000\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:%d\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n\r\n",
			st.ClientConns, blocked)
	}
	if all || want["memory"] {
		if err := c.memorySection(&b); err != nil {
			c.replyErr(err)
			return
		}
	}
	if all || want["stats"] {
		fmt.Fprintf(&b, "# Stats\r\ntotal_connections_received:%d\r\ntotal_commands_processed:%d\r\ntotal_error_replies:%d\r\nrejected_connections:0\r\nbackend_connections:%d\r\nbackend_dedicated_connections:%d\r\nbackend_dial_errors:%d\r\nbackend_writes:%d\r\nmigration_held_requests:%d\r\nmigration_tryagain_replies:%d\r\nmigration_keys_moved_on_access:%d\r\nmigration_source_reads:%d\r\n",
			st.ClientConnsTotal, st.Requests, st.Errors, st.BackendConns, st.DedicatedConns, st.BackendDialErrors, st.BackendWrites,
			st.MigrationHeld, st.MigrationTryAgain, st.KeysMovedOnAccess, st.MigrationSourceReads)
		if err := c.statsFromGroups(&b); err != nil {
			c.replyErr(err)
			return
		}
		b.WriteString("\r\n")
	}
	if all || want["replication"] {
		b.WriteString("# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_repl_offset:0\r\nrepl_backlog_active:0\r\n\r\n")
	}
	if all || want["cluster"] {
		fmt.Fprintf(&b, "# Cluster\r\ncluster_enabled:0\r\nredraft_groups:%d\r\n\r\n", c.groupCount())
	}
	// A user confined to a key prefix does not see the whole keyspace's size (DBSIZE is
	// refused to it for the same reason): the section is left out.
	if (all || want["keyspace"]) && (c.user == nil || c.user.KeyPrefix == "") {
		ks, err := c.keyspace()
		if err != nil {
			c.replyErr(err)
			return
		}
		b.WriteString("# Keyspace\r\n")
		b.WriteString(ks)
	}
	text := b.String()
	c.replyFunc(func(out []byte) []byte { return resp.AppendVerbatim(out, text, c.r3) })
}

// executable is the node's binary, as INFO server's executable.
func executable() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}

func (c *client) groupCount() int {
	if c.snap == nil {
		return 0
	}
	return len(c.snap.groups)
}

type dbStats struct{ keys, expires, ttlSum, ttlN int64 }

// keyspace sums INFO keyspace over the groups, less redraft's internal keys; avg_ttl is the
// mean of the groups' (weighted by keys with a TTL would need what Redis does not report).
func (c *client) keyspace() (string, error) {
	reps, err := c.askGroups(appendCommand(nil, []string{"INFO", "keyspace"}), false)
	if err != nil && err != errNoGroups {
		return "", err
	}
	if err := firstFailure(reps); err != nil {
		return "", err
	}
	dbs := map[int]*dbStats{}
	maxDB := -1
	for _, r := range reps {
		text, err := infoText(r)
		if err != nil {
			return "", err
		}
		for _, line := range bytes.Split(text, []byte("\r\n")) {
			name, rest, ok := bytes.Cut(line, []byte(":"))
			if !ok || !bytes.HasPrefix(name, []byte("db")) {
				continue
			}
			db, err := strconv.Atoi(string(name[2:]))
			if err != nil {
				continue
			}
			d := dbs[db]
			if d == nil {
				d = &dbStats{}
				dbs[db] = d
			}
			maxDB = max(maxDB, db)
			var keys int64
			for _, kv := range bytes.Split(rest, []byte(",")) {
				k, val, _ := bytes.Cut(kv, []byte("="))
				n, _ := strconv.ParseInt(string(val), 10, 64)
				switch string(k) {
				case "keys":
					d.keys += n
					keys = n
				case "expires":
					d.expires += n
				case "avg_ttl":
					if n > 0 {
						d.ttlSum += n
						d.ttlN++
					}
				}
			}
			if keys > 0 {
				n, ttl, err := c.internalKeys(r.g, db, true)
				if err != nil {
					return "", err
				}
				d.keys -= n
				d.expires -= ttl
			}
		}
	}
	var b strings.Builder
	for db := 0; db <= maxDB; db++ {
		d := dbs[db]
		if d == nil || d.keys <= 0 {
			continue
		}
		avg := int64(0)
		if d.ttlN > 0 {
			avg = d.ttlSum / d.ttlN
		}
		fmt.Fprintf(&b, "db%d:keys=%d,expires=%d,avg_ttl=%d\r\n", db, d.keys, max(d.expires, 0), avg)
	}
	return b.String(), nil
}

func cmdClusterInfo(c *client, _ *command.Spec, _ resp.Command) {
	assigned := 0
	groups := 0
	if snap := c.snap; snap != nil {
		for i := range snap.slots {
			if snap.slots[i].g != nil {
				assigned++
			}
		}
		groups = len(snap.groups)
	}
	state := "ok"
	if assigned < command.NumSlots {
		state = "fail"
	}
	text := fmt.Sprintf("cluster_state:%s\r\ncluster_slots_assigned:%d\r\ncluster_slots_ok:%d\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\ncluster_size:%d\r\nredraft_datacenter:%s\r\nredraft_node_id:%s\r\n",
		state, assigned, assigned, groups, c.s.cfg.DC, c.s.cfg.NodeID)
	c.replyFunc(func(b []byte) []byte { return resp.AppendVerbatim(b, text, c.r3) })
}

// commandList answers COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]
// over the served commands, with Redis's syntax errors.
func commandList(args [][]byte) ([]string, error) {
	names := command.Served()
	switch {
	case len(args) == 2:
		return names, nil
	case len(args) != 5 || !bytes.EqualFold(args[2], []byte("filterby")):
		return nil, errSyntax
	}
	var keep func(name string) bool
	arg := string(args[4])
	switch strings.ToLower(string(args[3])) {
	case "module":
		return nil, nil // redraft serves no module commands
	case "aclcat":
		keep = func(name string) bool { return command.ByName(name).InCategory(strings.ToLower(arg)) }
	case "pattern":
		keep = func(name string) bool { return match.Match(name, strings.ToLower(arg)) }
	default:
		return nil, errSyntax
	}
	out := names[:0]
	for _, n := range names {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out, nil
}
