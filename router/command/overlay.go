package command

// Kind is how redraft serves a command.
type Kind uint8

// The kinds of handling.
const (
	// Unsupported commands answer an error; the connection stays open.
	Unsupported Kind = iota
	// Forward sends the command to the group owning its keys' slot; keys must share a slot.
	Forward
	// Split divides a multi-key command by group and merges the replies in order.
	Split
	// Local commands are answered by the node itself.
	Local
	// Fanout commands go to every group of the DC and their replies are combined.
	Fanout
	// Block commands may block: they run on a dedicated backend connection.
	Block
	// PubSub commands subscribe or unsubscribe the session.
	PubSub
	// Publish commands go to the pub/sub group (or the channel's slot for sharded pub/sub).
	Publish
	// Tx commands are MULTI, EXEC, DISCARD, WATCH and UNWATCH.
	Tx
	// Script commands (EVAL, EVALSHA, FCALL) go to the group of their keys' slot.
	Script
	// Any commands need no key and may go to any group.
	Any
)

var kindNames = [...]string{"unsupported", "forward", "split", "local", "fanout", "blocking", "pubsub", "publish", "transaction", "script", "any group"}

// String names the kind, as docs/commands.md does.
func (k Kind) String() string { return kindNames[k] }

// dataCategories are ACL categories whose keyed commands are forwarded by default.
var dataCategories = []string{"string", "bitmap", "hash", "list", "set", "sortedset", "hyperloglog", "geo", "stream"}

type handling struct {
	kind Kind
	note string
}

// overlay is redraft's own handling, applied over the generated table. Commands of the data
// categories with keys default to Forward (Block when flagged blocking); everything else not
// listed here is Unsupported.
var overlay = map[string]handling{
	// Multi-key commands split per group and merged in order.
	"mget":   {Split, "split by group, replies merged in key order"},
	"mset":   {Split, "split by group; atomic only within a group: a group's error is the reply, and the other groups' keys are set"},
	"del":    {Split, "split by group, counts summed; a group's error is the reply, and the other groups' keys are deleted"},
	"unlink": {Split, "split by group, counts summed; a group's error is the reply, and the other groups' keys are deleted"},
	"exists": {Split, "split by group, counts summed"},
	"touch":  {Split, "split by group, counts summed"},

	// Keyspace commands on one key (or keys of one slot).
	"expire": {Forward, ""}, "pexpire": {Forward, ""}, "expireat": {Forward, ""}, "pexpireat": {Forward, ""},
	"expiretime": {Forward, ""}, "pexpiretime": {Forward, ""}, "ttl": {Forward, ""}, "pttl": {Forward, ""},
	"persist": {Forward, ""}, "type": {Forward, ""}, "dump": {Forward, ""}, "restore": {Forward, ""},
	"rename":          {Forward, "both keys must share a slot"},
	"renamenx":        {Forward, "both keys must share a slot"},
	"copy":            {Forward, "both keys must share a slot; DB works within the group (with several DCs and convergence on, only the session's database)"},
	"move":            {Forward, "moves between databases of the key's group (refused with several DCs and convergence on)"},
	"zincrby":         {Forward, "with several DCs, an increment of inf or -inf is refused (ZADD sets an infinite score)"},
	"object|encoding": {Forward, ""}, "object|freq": {Forward, ""}, "object|idletime": {Forward, ""}, "object|refcount": {Forward, ""},
	"object|help": {Any, ""},
	"sort":        {Forward, "BY and GET patterns must hash to the key's slot by a hash tag that closes before their *, as in Redis Cluster, and must not be able to form a __redraft: key; with GET or a BY pattern it runs as redraft's internal backend user"},
	"sort_ro":     {Forward, "BY and GET patterns must hash to the key's slot by a hash tag that closes before their *, as in Redis Cluster, and must not be able to form a __redraft: key; with GET or a BY pattern it runs as redraft's internal backend user"},
	"pfdebug":     {Unsupported, "internal debugging command"},
	"pfselftest":  {Unsupported, "internal test command"},

	// Whole-keyspace commands.
	"keys":      {Fanout, "every group; keys starting __redraft: hidden"},
	"scan":      {Fanout, "the cursor encodes the group (high 16 bits); every key returned once in a full iteration, except around slot migrations"},
	"randomkey": {Fanout, "a random group holding keys"},
	"dbsize":    {Fanout, "summed over groups, redraft's internal __redraft: keys not counted"},
	"flushdb":   {Fanout, "every group of every DC, a cluster operation ([Flushing](#flushing)); refused when flush is disabled"},
	"flushall":  {Fanout, "every group of every DC, a cluster operation ([Flushing](#flushing)); refused when flush is disabled"},

	// Scripts.
	"eval":          {Script, "keys must share a slot; without keys runs on the first group"},
	"eval_ro":       {Script, "keys must share a slot; without keys runs on the first group"},
	"evalsha":       {Script, "keys must share a slot; without keys runs on the first group"},
	"evalsha_ro":    {Script, "keys must share a slot; without keys runs on the first group"},
	"fcall":         {Script, "keys must share a slot; functions must be loaded on every group"},
	"fcall_ro":      {Script, "keys must share a slot; functions must be loaded on every group"},
	"script|load":   {Fanout, "loaded on every group"},
	"script|exists": {Fanout, "exists only if on every group"},
	"script|flush":  {Fanout, "every group"},
	"script|help":   {Any, ""},

	// Functions (router/functions.go).
	"function|load":    {Fanout, "every group of the DC (not carried to other DCs: load it through each DC)"},
	"function|delete":  {Fanout, "every group of the DC (not carried to other DCs)"},
	"function|flush":   {Fanout, "every group of the DC (not carried to other DCs)"},
	"function|restore": {Fanout, "every group of the DC (not carried to other DCs)"},
	"function|kill":    {Fanout, "stops the function running on any group"},
	"function|list":    {Fanout, "from the groups; an error names the groups when they differ"},
	"function|dump":    {Fanout, "from the groups; an error names the groups when they differ"},
	"function|stats":   {Fanout, "engines from the groups (an error when they differ); running_script from any group"},
	"function|help":    {Any, ""},

	// Configuration (router/config_cmd.go).
	"config|get":       {Fanout, "the first group's parameters; secrets (requirepass, masterauth, ...) left out"},
	"config|set":       {Fanout, "data-path parameters only (encodings, eviction, lazy freeing, ...), on every group of the DC, when the setting config_set allows; the rest refused"},
	"config|resetstat": {Fanout, "every group of the DC"},
	"config|help":      {Any, ""},
	"config|rewrite":   {Unsupported, "the groups' config files are the operator's"},

	// Blocking commands on a dedicated backend connection.
	"blpop": {Block, ""}, "brpop": {Block, ""}, "brpoplpush": {Block, "both keys must share a slot"},
	"blmove": {Block, "both keys must share a slot"}, "blmpop": {Block, ""}, "bzpopmin": {Block, ""},
	"bzpopmax": {Block, ""}, "bzmpop": {Block, ""},
	"xread":      {Block, "with BLOCK on a dedicated connection; keys must share a slot"},
	"xreadgroup": {Block, "with BLOCK on a dedicated connection; keys must share a slot"},
	"wait":       {Block, "asks every group's master; answers the smallest count"},

	// Sessions.
	"auth": {Local, "the node's users: AUTH pass (default user) or AUTH user pass; constant-time compare"}, "select": {Local, "per session; backend connections per database"},
	"readonly":  {Local, "reads of this connection may go to replicas (setting replica_max_lag bounds their lag)"},
	"readwrite": {Local, "reads of this connection go to masters"},
	"ping":      {Local, ""}, "echo": {Local, ""}, "quit": {Local, ""}, "reset": {Local, ""},
	"hello":          {Local, "protocol 2 or 3 (RESP3); AUTH user pass and SETNAME"},
	"acl|whoami":     {Local, "the session's user"},
	"client|setname": {Local, ""}, "client|getname": {Local, ""}, "client|id": {Local, ""}, "client|info": {Local, ""},
	"command": {Local, "redraft's supported commands"}, "command|count": {Local, ""}, "command|info": {Local, ""},
	"command|docs": {Local, ""}, "command|list": {Local, ""}, "command|getkeys": {Local, ""},
	"info":            {Local, "the node's sections plus keyspace summed over groups"},
	"cluster|keyslot": {Local, ""}, "cluster|info": {Local, ""},
	"time": {Any, "the first group's clock"},

	// The node's own clients (router/clients_cmd.go) and introspection.
	"client|list":     {Local, "the node's own clients"},
	"client|kill":     {Local, "the node's own clients"},
	"client|unblock":  {Local, "the node's own clients; not those polling a blocking write with several DCs"},
	"client|no-evict": {Local, "accepted; the node never evicts clients"},
	"memory|usage":    {Forward, ""},

	// Transactions.
	"multi": {Tx, "all keys of the transaction must share a slot"}, "exec": {Tx, ""}, "discard": {Tx, ""},
	"watch": {Tx, "on a dedicated connection to the keys' group"}, "unwatch": {Tx, "not inside MULTI: refused there, and EXEC answers EXECABORT (Redis queues it, a no-op)"},

	// Pub/sub.
	"subscribe": {PubSub, "on the DC's pub/sub group"}, "unsubscribe": {PubSub, ""},
	"psubscribe": {PubSub, "on the DC's pub/sub group"}, "punsubscribe": {PubSub, ""},
	"ssubscribe": {PubSub, "on the channel's slot group; channels must share a slot"}, "sunsubscribe": {PubSub, ""},
	"publish":              {Publish, "to the DC's pub/sub group"},
	"spublish":             {Publish, "to the channel's slot group"},
	"pubsub|channels":      {Publish, "the pub/sub group"},
	"pubsub|numsub":        {Publish, "the pub/sub group"},
	"pubsub|numpat":        {Publish, "the pub/sub group"},
	"pubsub|shardchannels": {Publish, "every group"},
	"pubsub|shardnumsub":   {Publish, "the channels' slot groups"},

	// redraft's own commands (extraSpecs).
	"redraft|consistency":          {Local, "sets the session's write consistency (DC_ONE, DC_QUORUM, DC_EACH_SAFE_QUORUM or DEFAULT); without a level answers the effective one"},
	"dyno_config:conn_consistency": {Local, "Dynomite's per-connection consistency: DC_ONE, DC_QUORUM, DC_SAFE_QUORUM (= DC_QUORUM) or DC_EACH_SAFE_QUORUM"},

	// Notable refusals.
	"swapdb":         {Unsupported, "would swap databases on every group without atomicity"},
	"migrate":        {Unsupported, "slots move with redraft migrate"},
	"restore-asking": {Unsupported, "Redis Cluster internal"},
	"monitor":        {Unsupported, "connect to a backend directly"},
	"sync":           {Unsupported, "replication is internal"},
	"psync":          {Unsupported, "replication is internal"},
}

// extraSpecs are commands that are not Redis's: redraft's own and Dynomite's. They join the
// generated table, and COMMAND INFO describes them from these fields.
var extraSpecs = []Spec{
	{Name: "redraft", Arity: -2, Flags: []string{"noscript", "loading", "stale", "fast"}, ACL: []string{"fast", "connection"}, KeySpecs: []KeySpec{}},
	{Name: "redraft|consistency", Arity: -2, Flags: []string{"noscript", "loading", "stale", "fast"}, ACL: []string{"fast", "connection"}, KeySpecs: []KeySpec{}},
	{Name: "dyno_config:conn_consistency", Arity: 2, Flags: []string{"noscript", "loading", "stale", "fast"}, ACL: []string{"fast", "connection"}, KeySpecs: []KeySpec{}},
}

// reasonFor explains why a command without an overlay entry is unsupported.
func reasonFor(s *Spec) string {
	switch {
	case s.InCategory("admin") || s.InCategory("dangerous"):
		return "server administration: connect to a backend directly"
	case len(s.Name) >= 7 && s.Name[:7] == "cluster":
		return "redraft is not a Redis Cluster; use redraft slots show"
	case len(s.Name) >= 8 && s.Name[:8] == "function":
		return "function management is not routed; load functions on every group"
	default:
		return "not supported by redraft"
	}
}
