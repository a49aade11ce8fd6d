package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/migrate"
	"github.com/redraft/redraft/node"
)

// jsonFlag lets --json follow the command as well as precede it.
var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON instead of tables"}

const cancelHelp = `Cancelling: a migration still frozen (waiting for the nodes' freeze acks) ends at once;
no key has moved and the slots stay with the source. A migration already migrating cannot just
stop, since its keys are split between the groups: cancel moves the keys already moved BACK to
the source behind a new freeze barrier (state "frozen", then "migrating", marked cancelling),
and then ends "cancelled" with the slots at the source. Cancelling a large migration late can
take as long as it ran.`

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "move slots of a datacenter to another group, online; pause, resume, throttle, cancel, watch",
		UsageText: `redraft migrate --dc dc1 --slots 0-4095 --to g2 [--rate 5000] [--wait]
   redraft migrate --dc dc1 --slots 0-99,200-299 --to g2 --wait
   redraft migrate pause 3 | resume 3 | cancel 3 | watch 3
   redraft migrate rate 3 10000`,
		Description: `Starts one migration: the slots (all served by one group) are frozen on every node of the
datacenter, then their keys move to the target group while clients keep using them (a key is
moved first when a client touches it). When the source holds no key of the slots, the slot
table points at the target. 'redraft migrations' lists migrations and their progress.

--rate throttles the background mover in keys per second (0: as fast as it goes); keys that
clients touch move regardless. --wait shows a progress bar until the migration ends; Ctrl-C
stops watching, not the migration.

` + cancelHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dc", Usage: "datacenter of the slots"},
			&cli.StringFlag{Name: "slots", Usage: "slot ranges, e.g. 0-4095 or 0-99,200", Aliases: []string{"s"}},
			&cli.StringFlag{Name: "to", Usage: "target group id"},
			&cli.Int64Flag{Name: "rate", Usage: "throttle in keys per second (0: unthrottled)"},
			&cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "show progress until the migration ends (Ctrl-C stops watching only)"},
			jsonFlag,
		},
		Action: startMigration,
		Subcommands: []*cli.Command{
			controlCommand("pause", "pause a migration's background mover (keys clients touch still move)", func(cl *node.Client, cx context.Context, id uint64) (node.MigrationInfo, error) {
				return cl.PauseMigration(cx, id)
			}),
			controlCommand("resume", "resume a paused migration", func(cl *node.Client, cx context.Context, id uint64) (node.MigrationInfo, error) {
				return cl.ResumeMigration(cx, id)
			}),
			cancelCommand(),
			{
				Name:      "rate",
				Usage:     "change a migration's throttle, in keys per second (0: unthrottled)",
				UsageText: "redraft migrate rate 3 10000\n   redraft migrate rate 3 0   # unthrottled",
				ArgsUsage: "ID KEYS_PER_SEC",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					id, err := migrationArg(c, "rate", " 10000")
					if err != nil {
						return err
					}
					rate, err := strconv.ParseInt(c.Args().Get(1), 10, 64)
					if err != nil || rate < 0 || c.NArg() != 2 {
						return fmt.Errorf("give the id and the new rate in keys per second, e.g. 'redraft migrate rate %d 10000' (0: unthrottled)", id)
					}
					cx, cancel := ctx(c)
					defer cancel()
					m, err := adminClient(c).SetMigrationRate(cx, id, rate)
					if err != nil {
						return err
					}
					return output(c, m, func() { fmt.Printf("migration %d: rate %s\n", id, rateText(m.Rate)) })
				},
			},
			{
				Name:      "watch",
				Usage:     "show a migration's progress until it ends (Ctrl-C stops watching only)",
				UsageText: "redraft migrate watch 3",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					id, err := migrationArg(c, "watch", "")
					if err != nil {
						return err
					}
					return waitAndReport(c, []uint64{id})
				},
			},
		},
	}
}

func startMigration(c *cli.Context) error {
	if c.Args().Present() {
		return fmt.Errorf("unknown subcommand %q: use pause, resume, cancel, rate or watch, or start one with --dc, --slots and --to ('redraft migrate --help')", c.Args().First())
	}
	if c.String("dc") == "" || c.String("slots") == "" || c.String("to") == "" {
		return errors.New("give --dc, --slots and --to, e.g. 'redraft migrate --dc dc1 --slots 0-4095 --to g2' ('redraft slots show' shows who serves what)")
	}
	if _, err := fsm.ParseSlotRanges(c.String("slots")); err != nil {
		return fmt.Errorf("--slots: %v", err)
	}
	if c.Int64("rate") < 0 {
		return errors.New("--rate is in keys per second and cannot be negative (0: unthrottled)")
	}
	cx, cancel := ctx(c)
	defer cancel()
	req := node.MigrateRequest{DC: c.String("dc"), Slots: []string{c.String("slots")}, To: c.String("to"), Rate: c.Int64("rate")}
	rep, err := adminClient(c).StartMigration(cx, req)
	if err != nil {
		return startHint(err)
	}
	m := rep.Migration
	if !c.Bool("wait") || !wantJSON(c) {
		if err := output(c, rep, func() {
			fmt.Printf("migration %d started: %s slots %s, %s -> %s, rate %s\n", rep.ID, m.DC, rangesText(m.Slots), m.From, m.To, rateText(m.Rate))
			if !c.Bool("wait") {
				fmt.Printf("watch it: redraft migrate watch %d   (or redraft migrations)\n", rep.ID)
			}
		}); err != nil {
			return err
		}
	}
	if !c.Bool("wait") {
		return nil
	}
	return waitAndReport(c, []uint64{rep.ID})
}

// startHint adds what to do to a refused start.
func startHint(err error) error {
	var ae *node.APIError
	if errors.As(err, &ae) && ae.Code == "busy" {
		return fmt.Errorf("%w; 'redraft migrations --active' shows what is in flight: wait for it or cancel it (redraft migrate cancel ID)", err)
	}
	return err
}

func controlCommand(name, usage string, f func(*node.Client, context.Context, uint64) (node.MigrationInfo, error)) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		UsageText: "redraft migrate " + name + " 3",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			id, err := migrationArg(c, name, "")
			if err != nil {
				return err
			}
			cx, cancel := ctx(c)
			defer cancel()
			m, err := f(adminClient(c), cx, id)
			if err != nil {
				return err
			}
			return output(c, m, func() { fmt.Printf("migration %d: %s\n", id, stateText(m)) })
		},
	}
}

func cancelCommand() *cli.Command {
	cmd := controlCommand("cancel", "cancel a migration: the slots stay with (or go back to) the source group", func(cl *node.Client, cx context.Context, id uint64) (node.MigrationInfo, error) {
		return cl.CancelMigration(cx, id)
	})
	cmd.Description = cancelHelp
	inner := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if err := inner(c); err != nil {
			return err
		}
		if !wantJSON(c) {
			id, _ := strconv.ParseUint(c.Args().First(), 10, 64)
			fmt.Printf("if keys had moved they are moving back now; 'redraft migrate watch %d' follows it\n", id)
		}
		return nil
	}
	return cmd
}

// migrationArg parses the first argument as a migration id.
func migrationArg(c *cli.Context, verb, rest string) (uint64, error) {
	id, err := strconv.ParseUint(c.Args().First(), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("give the migration id, e.g. 'redraft migrate %s 3%s' ('redraft migrations' lists them)", verb, rest)
	}
	return id, nil
}

func migrationsCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrations",
		Usage:     "list slot migrations with their state, progress, rate and the nodes a freeze waits for",
		UsageText: "redraft migrations [--dc dc1] [--active] [--json]",
		Description: `States: frozen (waiting for every node of the DC to ack the freeze: WAITING-FOR names the
ones that have not; a dead node must be removed), migrating, migrated, cancelled. "paused" and
"cancelling" (keys moving back to the source) are shown with the state.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dc", Usage: "only this datacenter"},
			&cli.BoolFlag{Name: "active", Aliases: []string{"a"}, Usage: "only migrations in flight"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			cx, cancel := ctx(c)
			defer cancel()
			ms, err := adminClient(c).Migrations(cx, c.String("dc"), c.Bool("active"))
			if err != nil {
				return err
			}
			return output(c, ms, func() {
				if len(ms) == 0 {
					fmt.Println("no migrations")
					return
				}
				var rows [][]string
				for _, m := range ms {
					rows = append(rows, []string{strconv.FormatUint(m.ID, 10), m.DC, rangesText(m.Slots), m.From, m.To,
						stateText(m), progressText(m), rateText(m.Rate), orDash(strings.Join(m.WaitingFor, ","))})
				}
				table([]string{"ID", "DC", "SLOTS", "FROM", "TO", "STATE", "PROGRESS", "RATE", "WAITING-FOR"}, rows)
			})
		},
	}
}

func rebalanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "rebalance",
		Usage: "plan and run migrations that even out the groups' keys and memory in a datacenter",
		UsageText: `redraft rebalance --dc dc1 --dry-run
   redraft rebalance --dc dc1 --rate 5000 --wait`,
		Description: `Reads each group master's key count and data memory (INFO keyspace, INFO memory), takes each
group's load as half its share of keys and half its share of memory, spread evenly over its
slots, and plans moves of whole slots until every group is within --tolerance of the mean.
Groups without slots (just added) receive slots. The plan is shown as a table, with each
group's load before and after; it runs (one migration per source and target, all at once)
unless --dry-run. Refused while the datacenter has migrations in flight.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dc", Required: true, Usage: "datacenter to rebalance"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only show the plan"},
			&cli.Int64Flag{Name: "rate", Usage: "throttle of each migration in keys per second (0: unthrottled)"},
			&cli.Float64Flag{Name: "tolerance", Value: 100 * migrate.DefaultTolerance, Usage: "percent of the mean load a group may be off"},
			&cli.BoolFlag{Name: "wait", Aliases: []string{"w"}, Usage: "show progress until the migrations end (Ctrl-C stops watching only)"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			tol := c.Float64("tolerance")
			if tol <= 0 || tol >= 100 {
				return errors.New("--tolerance is a percentage between 0 and 100, e.g. 5")
			}
			if c.Int64("rate") < 0 {
				return errors.New("--rate is in keys per second and cannot be negative (0: unthrottled)")
			}
			cx, cancel := ctx(c)
			defer cancel()
			req := node.RebalanceRequest{DC: c.String("dc"), DryRun: c.Bool("dry-run"), Rate: c.Int64("rate"), Tolerance: tol / 100}
			rep, err := adminClient(c).Rebalance(cx, req)
			if err != nil {
				return err
			}
			var ids []uint64
			failed := 0
			for _, s := range rep.Started {
				if s.Error != "" {
					failed++
				} else {
					ids = append(ids, s.ID)
				}
			}
			if !c.Bool("wait") || !wantJSON(c) || len(ids) == 0 {
				if err := output(c, rep, func() { printRebalance(rep) }); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d planned migrations did not start (above); 'redraft migrations' shows those that did", failed, len(rep.Started))
			}
			if !c.Bool("wait") || len(ids) == 0 {
				return nil
			}
			return waitAndReport(c, ids)
		},
	}
}

func printRebalance(rep node.RebalanceReply) {
	p := rep.Plan
	for _, w := range rep.Warnings {
		fmt.Println("warning:", w)
	}
	fmt.Printf("datacenter %s: load = %s, tolerance %.1f%% of the mean (%.1f%% per group)\n\n", rep.DC, p.Basis, 100*p.Tolerance, 100*p.Mean)
	if len(p.Moves) == 0 {
		if p.Balanced {
			fmt.Println("balanced: nothing to move")
		}
	} else {
		var rows [][]string
		for _, m := range p.Moves {
			rows = append(rows, []string{m.From, m.To, rangesText(m.Slots), strconv.Itoa(m.SlotCount()), strconv.FormatInt(m.EstKeys, 10), mb(m.EstBytes)})
		}
		table([]string{"FROM", "TO", "SLOTS", "COUNT", "EST-KEYS", "EST-MB"}, rows)
	}
	fmt.Println()
	var rows [][]string
	for i, b := range p.Before {
		a := p.After[i]
		rows = append(rows, []string{b.ID,
			fmt.Sprintf("%d -> %d", b.Slots, a.Slots),
			fmt.Sprintf("%d -> %d", b.Keys, a.Keys),
			fmt.Sprintf("%s -> %s", mb(b.Bytes), mb(a.Bytes)),
			fmt.Sprintf("%.1f%% -> %.1f%%", 100*b.Load, 100*a.Load)})
	}
	table([]string{"GROUP", "SLOTS", "KEYS", "MB", "LOAD"}, rows)
	for _, n := range p.Notes {
		fmt.Println("note:", n)
	}
	if len(p.Moves) == 0 {
		return
	}
	fmt.Println()
	if rep.DryRun {
		fmt.Printf("dry run: nothing changed. Run it with: redraft rebalance --dc %s\n", rep.DC)
		return
	}
	var started [][]string
	for _, s := range rep.Started {
		id, res := "-", "started"
		if s.Error != "" {
			res = "NOT STARTED: " + s.Error
		} else {
			id = strconv.FormatUint(s.ID, 10)
		}
		started = append(started, []string{id, s.From, s.To, rangesText(s.Slots), res})
	}
	table([]string{"MIGRATION", "FROM", "TO", "SLOTS", "RESULT"}, started)
}

// waitAndReport watches migrations until they end, then prints the outcome. Ctrl-C (or
// SIGTERM) stops watching and says so; the migrations go on.
func waitAndReport(c *cli.Context, ids []uint64) error {
	sctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := newWatcher(adminClient(c), ids, os.Stderr)
	final, err := w.run(sctx)
	if sctx.Err() != nil && c.Context.Err() == nil {
		list := idList(ids)
		return cli.Exit(fmt.Sprintf("stopped watching; the migration goes on (watch again: redraft migrate watch %s; stop it: redraft migrate cancel %s)", list, list), 130)
	}
	if err != nil {
		return err
	}
	cancelled := 0
	for _, m := range final {
		if m.State == fsm.MigrationCancelled {
			cancelled++
		}
	}
	if err := output(c, final, func() {
		for _, m := range final {
			if m.State == fsm.MigrationDone {
				fmt.Printf("migration %d done: %s slots %s now served by %s (%d keys, %s MB moved by the mover)\n", m.ID, m.DC, rangesText(m.Slots), m.To, m.KeysMoved, mb(m.BytesMoved))
			} else {
				fmt.Printf("migration %d was cancelled: %s slots %s stay with %s\n", m.ID, m.DC, rangesText(m.Slots), m.From)
			}
		}
	}); err != nil {
		return err
	}
	if cancelled > 0 {
		return fmt.Errorf("%d of %d migrations ended cancelled", cancelled, len(final))
	}
	return nil
}

func idList(ids []uint64) string {
	var s []string
	for _, id := range ids {
		s = append(s, strconv.FormatUint(id, 10))
	}
	return strings.Join(s, " ")
}

// rangesText renders ranges as "0-99,200".
func rangesText(rs []fsm.SlotRange) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.String())
	}
	return strings.Join(s, ",")
}

func rateText(r int64) string {
	if r <= 0 {
		return "unthrottled"
	}
	return fmt.Sprintf("%d keys/s", r)
}

// stateText is the state with the paused and cancelling marks.
func stateText(m node.MigrationInfo) string {
	s := string(m.State)
	if m.Cancelling && m.Active() {
		s += " (cancelling)"
	}
	if m.Paused && m.Active() {
		s += " (paused)"
	}
	return s
}

func progressText(m node.MigrationInfo) string {
	switch {
	case m.State == fsm.MigrationDone:
		return fmt.Sprintf("100%% %d keys", m.KeysMoved)
	case m.State == fsm.MigrationCancelled:
		return "-"
	case m.KeysTotal == 0 && m.KeysMoved == 0:
		return "-"
	}
	return fmt.Sprintf("%.0f%% %d/%d", 100*m.Progress, m.KeysMoved, max(m.KeysTotal, m.KeysMoved))
}

// mb renders bytes as megabytes with one decimal.
func mb(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }
