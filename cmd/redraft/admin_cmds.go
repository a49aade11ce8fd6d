package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/node"
)

func groupCommand() *cli.Command {
	return &cli.Command{
		Name:  "group",
		Usage: "add, change, remove and list groups (a Redis master plus replicas in one DC)",
		Description: `Example:
   redraft group add --dc dc1 --id g1 --master 10.0.0.5:6379 --replica 10.0.0.6:6379
   redraft group list`,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "create a group",
				UsageText: "redraft group add --dc dc1 --id g1 --master 10.0.0.5:6379 [--replica 10.0.0.6:6379 ...]",
				Flags:     groupFlags(),
				Action: func(c *cli.Context) error {
					return groupChange(c, func(cl *node.Client, g fsm.Group) error {
						cx, cancel := ctx(c)
						defer cancel()
						return cl.AddGroup(cx, c.String("dc"), g)
					})
				},
			},
			{
				Name:      "update",
				Usage:     "replace a group's master and replicas (after a failover); its password changes only with --password, which a server new to the group needs",
				UsageText: "redraft group update --dc dc1 --id g1 --master 10.0.0.6:6379 --replica 10.0.0.5:6379",
				Flags:     groupFlags(),
				Action: func(c *cli.Context) error {
					return groupChange(c, func(cl *node.Client, g fsm.Group) error {
						cx, cancel := ctx(c)
						defer cancel()
						u := node.GroupUpdate{Master: g.Master, Replicas: g.Replicas, Priority: g.Priority}
						if c.IsSet("password") {
							u.Password = &g.Password
						}
						if c.IsSet("user") {
							u.User = &g.User
						}
						return cl.UpdateGroup(cx, c.String("dc"), g.ID, u)
					})
				},
			},
			{
				Name:      "remove",
				Usage:     "remove a group that serves no slots",
				UsageText: "redraft group remove --dc dc1 --id g2",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dc", Required: true, Usage: "datacenter of the group"},
					&cli.StringFlag{Name: "id", Required: true, Usage: "group id"},
				},
				Action: func(c *cli.Context) error {
					cx, cancel := ctx(c)
					defer cancel()
					if err := adminClient(c).RemoveGroup(cx, c.String("dc"), c.String("id")); err != nil {
						return err
					}
					fmt.Printf("group %s removed from %s\n", c.String("id"), c.String("dc"))
					return nil
				},
			},
			groupFailoverCommand(),
			{
				Name:      "list",
				Usage:     "list groups with their slots",
				UsageText: "redraft group list [--dc dc1] [--json]",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "dc", Usage: "only this datacenter"}, jsonFlag},
				Action: func(c *cli.Context) error {
					st, err := fetchStatus(c)
					if err != nil {
						return err
					}
					var dcs []node.DCStatus
					for _, d := range st.DCs {
						if c.String("dc") == "" || d.Name == c.String("dc") {
							dcs = append(dcs, d)
						}
					}
					return output(c, dcs, func() { groupTable(dcs) })
				},
			},
		},
	}
}

// groupFlags are the flags of 'group add' and 'group update'.
func groupFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dc", Required: true, Usage: "datacenter of the group"},
		&cli.StringFlag{Name: "id", Required: true, Usage: "group id"},
		&cli.StringFlag{Name: "master", Required: true, Usage: "master HOST:PORT"},
		&cli.StringSliceFlag{Name: "replica", Usage: "replica HOST:PORT (repeat for more)"},
		&cli.StringFlag{Name: "user", Usage: "the backends' admin user (default: Redis's default user); redraft creates its ACL users with it", EnvVars: []string{"REDRAFT_GROUP_USER"}},
		&cli.StringFlag{Name: "password", DefaultText: "unset", Usage: "the backends' admin AUTH password (the default user's requirepass, or the password of --user; shown afterwards only as set or unset); prefer the environment variable", EnvVars: []string{"REDRAFT_GROUP_PASSWORD"}},
		&cli.StringSliceFlag{Name: "priority", Usage: "replica promotion priority HOST:PORT=N (lower first, 0 never, default 100; repeat for more)"},
	}
}

// priorities parses --priority HOST:PORT=N flags.
func priorities(c *cli.Context) (map[string]int, error) {
	var out map[string]int
	for _, p := range c.StringSlice("priority") {
		addr, v, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("--priority %q: want HOST:PORT=N with N a whole number, 0 or more", p)
		}
		if out == nil {
			out = map[string]int{}
		}
		out[addr] = n
	}
	return out, nil
}

func groupChange(c *cli.Context, f func(*node.Client, fsm.Group) error) error {
	prio, err := priorities(c)
	if err != nil {
		return err
	}
	g := fsm.Group{ID: c.String("id"), Master: c.String("master"), Replicas: c.StringSlice("replica"), User: c.String("user"),
		Password: c.String("password"), Priority: prio}
	if err := f(adminClient(c), g); err != nil {
		return err
	}
	fmt.Printf("group %s in %s: master %s", g.ID, c.String("dc"), g.Master)
	if len(g.Replicas) > 0 {
		fmt.Printf(", replicas %s", strings.Join(g.Replicas, " "))
	}
	fmt.Println()
	return nil
}

func groupTable(dcs []node.DCStatus) {
	var rows [][]string
	for _, d := range dcs {
		for _, g := range d.Groups {
			rows = append(rows, []string{d.Name, g.ID, g.Master, orDash(strings.Join(g.Replicas, ",")), strconv.Itoa(g.Slots), orDash(strings.Join(g.Ranges, " "))})
		}
		if d.Unassigned > 0 {
			rows = append(rows, []string{d.Name, "(unassigned)", "-", "-", strconv.Itoa(d.Unassigned), "-"})
		}
	}
	table([]string{"DC", "GROUP", "MASTER", "REPLICAS", "SLOTS", "RANGES"}, rows)
}

func slotsCommand() *cli.Command {
	return &cli.Command{
		Name:  "slots",
		Usage: "assign and show the slot table",
		Description: `Example:
   redraft slots assign --dc dc1 --group g1 0-8191
   redraft slots show --dc dc1`,
		Subcommands: []*cli.Command{
			{
				Name:  "assign",
				Usage: "make a group serve slots (free slots only, unless --force)",
				UsageText: `redraft slots assign --dc dc1 --group g1 0-8191
   redraft slots assign --dc dc1 --group g2 8192-16383
   redraft slots assign --dc dc1 --group g2 --force 100-200   # reassigns owned slots, moves NO data`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dc", Required: true, Usage: "datacenter"},
					&cli.StringFlag{Name: "group", Required: true, Usage: "group id"},
					&cli.BoolFlag{Name: "force", Usage: "also reassign slots another group owns (their keys stay behind: use 'redraft migrate' to move data)"},
				},
				ArgsUsage: "RANGE...",
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return fmt.Errorf("give the slots to assign, e.g. 'redraft slots assign --dc %s --group %s 0-8191'", c.String("dc"), c.String("group"))
					}
					if _, err := fsm.ParseSlotRanges(c.Args().Slice()...); err != nil {
						return err
					}
					cx, cancel := ctx(c)
					defer cancel()
					req := node.AssignRequest{DC: c.String("dc"), Group: c.String("group"), Slots: c.Args().Slice(), Force: c.Bool("force")}
					if err := adminClient(c).AssignSlots(cx, req); err != nil {
						return err
					}
					fmt.Printf("slots %s of %s now served by group %s\n", strings.Join(req.Slots, " "), req.DC, req.Group)
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "show which group serves which slots",
				UsageText: "redraft slots show [--dc dc1] [--json]",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "dc", Usage: "only this datacenter"}, jsonFlag},
				Action: func(c *cli.Context) error {
					cx, cancel := ctx(c)
					defer cancel()
					sl, err := adminClient(c).Slots(cx, c.String("dc"))
					if err != nil {
						return err
					}
					return output(c, sl, func() {
						var rows [][]string
						for _, dc := range sortedKeys(sl) {
							for _, g := range sortedKeys(sl[dc]) {
								rows = append(rows, []string{dc, g, strings.Join(sl[dc][g], " ")})
							}
						}
						table([]string{"DC", "GROUP", "SLOTS"}, rows)
					})
				},
			},
		},
	}
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "show and change cluster-wide settings",
		Description: `Example:
   redraft config get
   redraft config set write_consistency DC_QUORUM`,
		Subcommands: []*cli.Command{
			{
				Name:      "get",
				Usage:     "show settings",
				UsageText: "redraft config get [KEY] [--json]",
				Flags:     []cli.Flag{jsonFlag},
				Action: func(c *cli.Context) error {
					cx, cancel := ctx(c)
					defer cancel()
					items, err := adminClient(c).Config(cx)
					if err != nil {
						return err
					}
					if k := c.Args().First(); k != "" {
						for _, it := range items {
							if it.Key == k {
								return output(c, it, func() { fmt.Println(it.Value) })
							}
						}
						return fmt.Errorf("unknown setting %q; 'redraft config get' lists them", k)
					}
					return output(c, items, func() {
						var rows [][]string
						for _, it := range items {
							rows = append(rows, []string{it.Key, it.Value, it.Help})
						}
						table([]string{"KEY", "VALUE", "MEANING"}, rows)
					})
				},
			},
			{
				Name:      "set",
				Usage:     "change a setting",
				UsageText: "redraft config set write_consistency DC_QUORUM",
				ArgsUsage: "KEY VALUE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return fmt.Errorf("give a key and a value, e.g. 'redraft config set max_voters 3'")
					}
					cx, cancel := ctx(c)
					defer cancel()
					if err := adminClient(c).SetConfig(cx, c.Args().Get(0), c.Args().Get(1)); err != nil {
						return err
					}
					fmt.Printf("%s = %s\n", c.Args().Get(0), c.Args().Get(1))
					return nil
				},
			},
		},
	}
}
