package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/migrate"
)

// digest is a DC's data as seen on its group masters: per slot, each user key's logical
// value and absolute expiry, so two DCs can be compared slot by slot.
type digest struct {
	// slots maps slot -> key -> the key's record (type, expiry, value).
	slots map[int]map[string]string
	keys  int
}

// hash is the slot's hash over its records in key order ("" for an empty slot).
func (d *digest) hash(slot int) string {
	recs := d.slots[slot]
	if len(recs) == 0 {
		return ""
	}
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s=%d:%s;", len(k), k, len(recs[k]), recs[k])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// digestDC reads every key of the DC's group masters (keys starting with "__redraft:" are
// redraft's own and skipped).
func digestDC(ctx context.Context, masters []string) (*digest, error) {
	d := &digest{slots: map[int]map[string]string{}}
	for _, m := range masters {
		rdb := redis.NewClient(&redis.Options{Addr: m, ReadTimeout: 10 * time.Second})
		err := digestMaster(ctx, rdb, d)
		rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("master %s: %w", m, err)
		}
	}
	return d, nil
}

func digestMaster(ctx context.Context, rdb *redis.Client, d *digest) error {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return err
		}
		var user []string
		for _, k := range keys {
			if !strings.HasPrefix(k, "__redraft:") {
				user = append(user, k)
			}
		}
		if err := readRecords(ctx, rdb, user, d); err != nil {
			return err
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// readRecords reads the type and expiry of keys in one pipeline, then their values in a
// second one. A key that expires or is deleted in between reads as gone.
func readRecords(ctx context.Context, rdb *redis.Client, keys []string, d *digest) error {
	if len(keys) == 0 {
		return nil
	}
	pipe := rdb.Pipeline()
	types := make([]*redis.StatusCmd, len(keys))
	for i, k := range keys {
		types[i] = pipe.Type(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	pipe = rdb.Pipeline()
	vals := make([]func() (string, error), len(keys))
	expiry := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		expiry[i] = pipe.Do(ctx, "PEXPIRETIME", k) // absolute ms; -1: none
		vals[i] = valueOf(ctx, pipe, k, types[i].Val())
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return err
	}
	for i, k := range keys {
		if types[i].Val() == "none" {
			continue
		}
		v, err := vals[i]()
		if err == redis.Nil {
			continue // gone between the two pipelines
		}
		if err != nil {
			return fmt.Errorf("%s (%s): %w", k, types[i].Val(), err)
		}
		slot := migrate.SlotString(k)
		if d.slots[slot] == nil {
			d.slots[slot] = map[string]string{}
		}
		px, err := expiry[i].Int64()
		if err != nil {
			return fmt.Errorf("PEXPIRETIME %s: %w", k, err)
		}
		rec := fmt.Sprintf("%s px=%d %s", types[i].Val(), px, v)
		if old, dup := d.slots[slot][k]; dup { // on two masters of the DC at once
			rec = "DUPLICATE " + old + " | " + rec
		}
		d.slots[slot][k] = rec
		d.keys++
	}
	return nil
}

// valueOf queues the read of key's logical value by its type on pipe and returns how to get
// it as text once the pipeline ran.
func valueOf(ctx context.Context, pipe redis.Pipeliner, key, typ string) func() (string, error) {
	switch typ {
	case "string":
		c := pipe.Get(ctx, key)
		return c.Result
	case "hash":
		c := pipe.HGetAll(ctx, key)
		return func() (string, error) {
			m, err := c.Result()
			if len(m) == 0 && err == nil {
				err = redis.Nil
			}
			fields := make([]string, 0, len(m))
			for f, v := range m {
				fields = append(fields, strconv.Quote(f)+"="+strconv.Quote(v))
			}
			sort.Strings(fields)
			return strings.Join(fields, ","), err
		}
	case "set":
		c := pipe.SMembers(ctx, key)
		return sortedList(c)
	case "zset":
		c := pipe.ZRangeWithScores(ctx, key, 0, -1)
		return func() (string, error) {
			zs, err := c.Result()
			var b strings.Builder
			for _, z := range zs {
				fmt.Fprintf(&b, "%q:%v,", z.Member, z.Score)
			}
			if len(zs) == 0 && err == nil {
				err = redis.Nil
			}
			return b.String(), err
		}
	case "list":
		c := pipe.LRange(ctx, key, 0, -1)
		return func() (string, error) {
			l, err := c.Result()
			if len(l) == 0 && err == nil {
				err = redis.Nil
			}
			return quoteAll(l), err
		}
	case "stream":
		c := pipe.XRange(ctx, key, "-", "+")
		return func() (string, error) {
			msgs, err := c.Result()
			var b strings.Builder
			for _, m := range msgs {
				fields := make([]string, 0, len(m.Values))
				for f, v := range m.Values {
					fields = append(fields, fmt.Sprintf("%q=%q", f, fmt.Sprint(v)))
				}
				sort.Strings(fields)
				fmt.Fprintf(&b, "%s{%s},", m.ID, strings.Join(fields, ","))
			}
			return b.String(), err
		}
	case "none":
		return func() (string, error) { return "", redis.Nil }
	}
	return func() (string, error) { return "", fmt.Errorf("type %q is not digested", typ) }
}

func sortedList(c *redis.StringSliceCmd) func() (string, error) {
	return func() (string, error) {
		l, err := c.Result()
		if len(l) == 0 && err == nil {
			err = redis.Nil
		}
		l = append([]string(nil), l...)
		sort.Strings(l)
		return quoteAll(l), err
	}
}

func quoteAll(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ",")
}

// slotDiff is one slot whose data differs between two DCs, with an example key.
type slotDiff struct {
	Slot   int
	Key    string
	A, B   string // the key's record in each DC ("<absent>" when missing)
	NA, NB int    // the slot's key counts
}

func (s slotDiff) String() string {
	return fmt.Sprintf("slot %d (%d vs %d keys): key %q: %s | %s", s.Slot, s.NA, s.NB, s.Key, clip(s.A), clip(s.B))
}

func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// diffDigests returns the slots whose data differ between a and b, in slot order.
func diffDigests(a, b *digest) []slotDiff {
	var out []slotDiff
	for slot := 0; slot < migrate.NumSlots; slot++ {
		ra, rb := a.slots[slot], b.slots[slot]
		if len(ra) == 0 && len(rb) == 0 || a.hash(slot) == b.hash(slot) {
			continue
		}
		d := slotDiff{Slot: slot, NA: len(ra), NB: len(rb)}
		keys := map[string]bool{}
		for k := range ra {
			keys[k] = true
		}
		for k := range rb {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			va, oka := ra[k]
			vb, okb := rb[k]
			if oka && okb && va == vb {
				continue
			}
			if !oka {
				va = "<absent>"
			}
			if !okb {
				vb = "<absent>"
			}
			d.Key, d.A, d.B = k, va, vb
			break
		}
		out = append(out, d)
	}
	return out
}
