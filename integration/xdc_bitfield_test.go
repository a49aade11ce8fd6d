package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redraft/redraft/internal/testredis"
)

// TestXDCBitfieldExact: BITFIELDs that set and increment 64-bit fields, written through a
// node of every DC, answer what a redis-server answers to the same commands (exact integers
// past 2^53, nulls of OVERFLOW FAIL), and every DC ends with the same bytes, Redis's.
func TestXDCBitfieldExact(t *testing.T) {
	x := startXDC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Addr})
	defer ref.Close()
	script := [][]any{
		{"SET", "i64", "0", "9223372036854775807", "GET", "i64", "0"},
		{"INCRBY", "i64", "0", "-1", "GET", "u63", "1", "SET", "u63", "#2", "9223372036854775807"},
		{"OVERFLOW", "FAIL", "INCRBY", "i64", "0", "2", "OVERFLOW", "SAT", "INCRBY", "i64", "0", "2"},
		{"INCRBY", "i64", "#3", "9007199254740993", "INCRBY", "i64", "#3", "9007199254740993", "SET", "u8", "0", "1"},
		{"SET", "i64", "#1", "-9223372036854775808", "INCRBY", "i64", "#1", "-1", "GET", "i64", "#1"},
	}
	var keys []string
	for i, n := range x.nodes {
		key := fmt.Sprintf("bf:%s", n.ID)
		keys = append(keys, key)
		rdb := redis.NewClient(&redis.Options{Addr: n.Listen}) // RESP3, go-redis's default
		for j, ops := range script {
			args := append([]any{"BITFIELD", key}, ops...)
			got, gerr := rdb.Do(ctx, args...).Result()
			want, werr := ref.Do(ctx, args...).Result()
			if fmt.Sprint(got, gerr) != fmt.Sprint(want, werr) {
				t.Errorf("%s, BITFIELD %d of node %d: %v, %v; redis-server %v, %v", n.ID, j, i, got, gerr, want, werr)
			}
		}
		rdb.Close()
	}
	x.waitConverged(60 * time.Second)
	for _, key := range keys {
		want := ref.Get(ctx, key).Val()
		for _, dc := range x.dcs {
			n := x.live(dc)
			rdb := redis.NewClient(&redis.Options{Addr: n.Listen})
			if got, err := rdb.Get(ctx, key).Result(); err != nil || got != want {
				t.Errorf("%s in %s: %q, %v; redis-server holds %q", key, dc, got, err, want)
			}
			rdb.Close()
		}
	}
}
