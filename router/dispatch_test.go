package router

import (
	"strings"
	"testing"
)

func TestSortPatterns(t *testing.T) {
	tc := startCluster(t, 2, 1, Config{})
	ctx := ctxT(t)
	c := tc.client(0)
	c.RPush(ctx, "{l}list", 2, 1)
	c.Set(ctx, "{l}w_1", 5, 0)
	c.Set(ctx, "{l}w_2", 0, 0)
	if v := c.Do(ctx, "SORT", "{l}list", "BY", "{l}w_*").Val(); len(v.([]any)) != 2 || v.([]any)[0] != "2" {
		t.Fatalf("SORT BY tagged pattern = %v", v)
	}
	for _, args := range [][]any{
		{"SORT", "{l}list", "BY", "w_*"},
		{"SORT", "{l}list", "GET", "{other}*"},
		{"SORT_RO", "{l}list", "GET", "x_*"},
		// The '*' before the tag: an element "{u}" makes the key x{u}{l}, in u's slot.
		{"SORT", "{l}list", "BY", "nosort", "GET", "x*{l}"},
		{"SORT", "{l}list", "BY", "w*{l}"},
		{"SORT", "{l}list", "GET", "{l*}x"},
		{"SORT", "{l}list", "GET", "{}*{l}"},
	} {
		if err := c.Do(ctx, args...).Err(); err == nil || !strings.Contains(err.Error(), "denied in Cluster mode") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if err := c.Do(ctx, "SORT", "{l}list", "BY", "nosort", "GET", "#").Err(); err != nil {
		t.Fatalf("SORT BY nosort GET #: %v", err)
	}
	if err := c.Do(ctx, "SORT", "{l}list", "STORE", "{l}dst").Err(); err != nil {
		t.Fatalf("SORT STORE same slot: %v", err)
	}
	if err := c.Do(ctx, "SORT", "{l}list", "STORE", "{x}dst").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Fatalf("SORT STORE other slot: %v", err)
	}
}
