package migrate

import (
	"context"
	"fmt"
)

// readStream copies a stream: its entries with their ids (XRANGE → XADD), its metadata
// (XSETID with ENTRIESADDED and MAXDELETEDID), its consumer groups (XGROUP CREATE with
// ENTRIESREAD), their consumers (XGROUP CREATECONSUMER) and their pending entries (XCLAIM
// FORCE with IDLE and RETRYCOUNT). What this cannot carry is listed in DESIGN.md.
func (c *copier) readStream(ctx context.Context, emit func(*batch) error) error {
	info, err := c.readMap(ctx, "XINFO", "STREAM", c.key)
	if err != nil {
		return err
	}
	copied := 0
	for start := "-"; ; {
		v, err := c.read(ctx, "XRANGE", c.key, start, "+", "COUNT", c.chunk)
		if err != nil {
			return err
		}
		entries, _ := v.([]any)
		b := c.newBatch()
		for _, e := range entries {
			id, fields, err := streamEntry(e)
			if err != nil {
				return err
			}
			b.add("XADD", append([]any{id}, fields...)...)
			start = "(" + id
		}
		copied += len(entries)
		if err := emit(b); err != nil {
			return err
		}
		if len(entries) < c.chunk {
			break
		}
	}
	b := c.newBatch()
	if copied == 0 {
		// An empty stream (it can still be big through its groups): create it.
		b.add("XADD", "0-1", "_", "_")
		b.add("XDEL", "0-1")
	}
	b.add("XSETID", str(info["last-generated-id"]),
		"ENTRIESADDED", str(info["entries-added"]), "MAXDELETEDID", str(info["max-deleted-entry-id"]))
	if err := emit(b); err != nil {
		return err
	}
	groups, err := c.readMaps(ctx, "XINFO", "GROUPS", c.key)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := c.copyGroup(ctx, g, emit); err != nil {
			return err
		}
	}
	return nil
}

// copyGroup copies one consumer group, its consumers and its pending entries list.
func (c *copier) copyGroup(ctx context.Context, g map[string]any, emit func(*batch) error) error {
	name := str(g["name"])
	b := c.newBatch()
	create := []any{name, str(g["last-delivered-id"])}
	if er := g["entries-read"]; er != nil {
		create = append(create, "ENTRIESREAD", str(er))
	}
	b.add("XGROUP", append([]any{"CREATE"}, create...)...)
	consumers, err := c.readMaps(ctx, "XINFO", "CONSUMERS", c.key, name)
	if err != nil {
		return err
	}
	for _, cons := range consumers {
		b.add("XGROUP", "CREATECONSUMER", name, str(cons["name"]))
	}
	if err := emit(b); err != nil {
		return err
	}
	for start := "-"; ; {
		v, err := c.read(ctx, "XPENDING", c.key, name, start, "+", c.chunk)
		if err != nil {
			return err
		}
		pending, _ := v.([]any)
		b := c.newBatch()
		for _, p := range pending {
			f, _ := p.([]any)
			if len(f) != 4 {
				return fmt.Errorf("XPENDING: unexpected entry %v", p)
			}
			id := str(f[0])
			b.add("XCLAIM", name, str(f[1]), 0, id, "IDLE", str(f[2]), "RETRYCOUNT", str(f[3]), "FORCE", "JUSTID")
			start = "(" + id
		}
		if err := emit(b); err != nil {
			return err
		}
		if len(pending) < c.chunk {
			return nil
		}
	}
}

// readMap reads a reply of alternating names and values (RESP2 maps, as XINFO answers).
func (c *copier) readMap(ctx context.Context, args ...any) (map[string]any, error) {
	v, err := c.read(ctx, args...)
	if err != nil {
		return nil, err
	}
	return pairs(v)
}

// readMaps reads a list of maps.
func (c *copier) readMaps(ctx context.Context, args ...any) ([]map[string]any, error) {
	v, err := c.read(ctx, args...)
	if err != nil {
		return nil, err
	}
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		m, err := pairs(e)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func pairs(v any) (map[string]any, error) {
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		return nil, fmt.Errorf("unexpected map reply %T", v)
	}
	m := make(map[string]any, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		m[str(list[i])] = list[i+1]
	}
	return m, nil
}

// streamEntry splits an XRANGE entry into its id and its field/value list.
func streamEntry(e any) (string, []any, error) {
	pair, _ := e.([]any)
	if len(pair) != 2 {
		return "", nil, fmt.Errorf("XRANGE: unexpected entry %v", e)
	}
	fields, _ := pair[1].([]any)
	return str(pair[0]), fields, nil
}

// str formats a reply value (string or integer) as a command argument.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return fmt.Sprint(x)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}
