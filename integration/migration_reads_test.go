package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestMigrationReadsSeeLatestWrites: clients read and write keys of migrating slots through two
// nodes while a throttled migration moves them, one of those nodes is killed and restarted, and
// then the mover's node is killed and removed (the next owner starts the mover over). Reads of
// keys still on the source are answered there (router/DESIGN.md, "Reads on the source"), so the
// history checker judges exactly that path: every GET returns the last acknowledged write or a
// later one, every acknowledged INCR and RPUSH counts once, and the final values agree.
func TestMigrationReadsSeeLatestWrites(t *testing.T) {
	redis.SetLogger(quietLogger{}) // clients dial the killed nodes; the history has every outcome
	_, nodes := migCluster(t)
	n1, n2, mover := nodes[0], nodes[1], nodes[2] // n3 (token 0) runs slot 0's mover
	rdb := redis.NewClient(&redis.Options{Addr: n1.Listen, MaxRetries: -1})
	defer rdb.Close()
	loadBulk(t, rdb, 20000) // ballast: the throttled mover takes seconds over slots 0-8191

	// Many keys, so that most reads find their key still on the source: a write moves it.
	keys := newChaosKeys("", 1500)
	h := &history{start: time.Now(), targets: &targets{nodes: map[string][]*proc{}}, stop: make(chan struct{}), opTime: 3 * time.Second}
	h.targets.set("dc1", []*proc{n1, n2})
	setRegisters(t, h, rdb, n1, keys.registers)
	h.startClients(7, 6, map[string]chaosKeys{"dc1": keys}, []string{"dc1"})
	defer h.stopClients()

	id := startThrottled(t, n1, "0-8191", "g2", 1500)
	n2.Kill9()
	n2.Start(n1.Peer)
	n2.WaitHealthy(30 * time.Second)
	t.Logf("restarted %s mid-migration", n2.ID)
	waitSourceReads(t, n1, 1)
	mover.Kill9()
	n1.MustCLI("node", "remove", mover.ID)
	t.Logf("killed and removed the mover's node %s mid-migration", mover.ID)
	if _, err := n1.Client().SetMigrationRate(context.Background(), id, 3000); err != nil {
		t.Fatal(err)
	}
	waitMigrated(t, id, 120*time.Second, n1, n2)
	checkSlotOwner(t, n2, 100, "g2")
	h.stopClients()
	end := h.since()

	final, err := readKeys(n1.Listen, keys.all())
	if err != nil {
		t.Fatal(err)
	}
	ops := h.all()
	var vs []violation
	vs = append(vs, checkCounters(ops, final)...)
	vs = append(vs, checkLists(ops, final)...)
	vs = append(vs, checkRegisters(ops, final, end)...)
	checkBulk(t, rdb, 20000)
	reads, ok := 0, 0
	for _, o := range ops {
		if (o.kind == opGet || o.kind == opReadCtr) && o.out == outOK {
			reads++
		}
		if o.out == outOK {
			ok++
		}
	}
	t.Logf("%d operations (%d acknowledged, %d acknowledged reads), %d reads answered by the source through %s",
		len(ops), ok, reads, sourceReads(t, n1), n1.ID)
	for i, v := range collapse(vs) {
		if i == 20 {
			t.Errorf("... %d violations in all", len(vs))
			break
		}
		t.Errorf("violation %s", v)
	}
}

// sourceReads returns INFO's migration_source_reads of node p.
func sourceReads(t *testing.T, p *proc) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: p.Listen, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatalf("INFO stats of %s: %v", p.ID, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "migration_source_reads:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("INFO stats of %s has no migration_source_reads", p.ID)
	return 0
}

// waitSourceReads waits until node p has answered at least n reads from a migration's source.
func waitSourceReads(t *testing.T, p *proc, n int64) {
	t.Helper()
	waitFor(t, 30*time.Second, p.ID+" reads on the source", func() error {
		if got := sourceReads(t, p); got < n {
			return fmt.Errorf("%d reads answered by the source", got)
		}
		return nil
	})
}

// setRegisters writes every register once through p, recorded in h as the operations of a
// client of their own, so the checker knows the values.
func setRegisters(t *testing.T, h *history, rdb *redis.Client, p *proc, regs []string) {
	t.Helper()
	c := &chaosClient{id: len(h.clients), dc: "dc1"}
	for _, k := range regs {
		o := op{client: c.id, node: p.ID, kind: opSet, key: k, arg: h.values.Add(1), inv: h.since()}
		err := rdb.Set(context.Background(), k, o.arg, 0).Err()
		o.cmp = h.since()
		if err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		c.ops = append(c.ops, o)
	}
	h.clients = append(h.clients, c)
}
