package node

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// StartMigration starts moving slots of a DC to a group and returns the new migration's id.
// It returns once the slots are frozen; the move itself goes on in the background.
func (c *Client) StartMigration(ctx context.Context, req MigrateRequest) (StartReply, error) {
	var out StartReply
	return out, c.do(ctx, http.MethodPost, "/migrations", req, &out)
}

// Migrations lists migrations, oldest first: of one DC ("" for all), only active ones if
// activeOnly.
func (c *Client) Migrations(ctx context.Context, dc string, activeOnly bool) ([]MigrationInfo, error) {
	q := url.Values{}
	if dc != "" {
		q.Set("dc", dc)
	}
	if activeOnly {
		q.Set("active", "true")
	}
	path := "/migrations"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []MigrationInfo
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Migration returns one migration.
func (c *Client) Migration(ctx context.Context, id uint64) (MigrationInfo, error) {
	var out MigrationInfo
	return out, c.do(ctx, http.MethodGet, migrationPath(id, ""), nil, &out)
}

// PauseMigration stops a migration's mover; keys clients touch still move.
func (c *Client) PauseMigration(ctx context.Context, id uint64) (MigrationInfo, error) {
	return c.controlMigration(ctx, id, "pause", nil)
}

// ResumeMigration restarts a paused migration's mover.
func (c *Client) ResumeMigration(ctx context.Context, id uint64) (MigrationInfo, error) {
	return c.controlMigration(ctx, id, "resume", nil)
}

// CancelMigration cancels a migration: a frozen one ends at once and nothing moved; a
// migrating one moves the keys already moved back to the source behind a new freeze, then
// ends cancelled with the slots at the source.
func (c *Client) CancelMigration(ctx context.Context, id uint64) (MigrationInfo, error) {
	return c.controlMigration(ctx, id, "cancel", nil)
}

// SetMigrationRate changes a migration's throttle, in keys per second (0: unthrottled).
func (c *Client) SetMigrationRate(ctx context.Context, id uint64, rate int64) (MigrationInfo, error) {
	return c.controlMigration(ctx, id, "rate", RateRequest{Rate: &rate})
}

func (c *Client) controlMigration(ctx context.Context, id uint64, action string, body any) (MigrationInfo, error) {
	var out MigrationInfo
	return out, c.do(ctx, http.MethodPost, migrationPath(id, action), body, &out)
}

// Rebalance plans a DC's rebalance from its masters' keys and memory and, unless
// req.DryRun, starts the planned migrations.
func (c *Client) Rebalance(ctx context.Context, req RebalanceRequest) (RebalanceReply, error) {
	var out RebalanceReply
	return out, c.do(ctx, http.MethodPost, "/rebalance", req, &out)
}

func migrationPath(id uint64, action string) string {
	p := "/migrations/" + strconv.FormatUint(id, 10)
	if action != "" {
		p += "/" + action
	}
	return p
}
