package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/node"
)

// groupFailoverCommand is 'redraft group failover': a planned switchover (docs/failover.md).
func groupFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "move a group's master to a replica with no acknowledged write lost (planned switchover)",
		UsageText: `redraft group failover --dc dc1 --group g1 [--to 10.0.0.6:6379] [--json]
   The nodes hold the group's writes, wait until the replica has every write of the master, promote
   it and make the old master its replica; writes wait well under a second. Use it for a rolling
   upgrade of Redis: switch over, upgrade the old master (now a replica), repeat.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dc", Required: true, Usage: "datacenter of the group"},
			&cli.StringFlag{Name: "group", Aliases: []string{"id"}, Required: true, Usage: "group id"},
			&cli.StringFlag{Name: "to", Usage: "replica HOST:PORT to promote (default: the one closest to the master)"},
			&cli.StringFlag{Name: "reason", Usage: "why, for the log and the status"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			cx, cancel := ctx(c)
			defer cancel()
			out, err := adminClient(c).Failover(cx, c.String("dc"), c.String("group"),
				node.FailoverRequest{To: c.String("to"), Reason: c.String("reason")})
			if err != nil {
				return err
			}
			if err := output(c, out, func() {
				f := out.Failover
				switch {
				case f == nil:
					fmt.Printf("group %s: master %s\n", c.String("group"), out.Master)
				case !out.Done:
					fmt.Printf("group %s: switchover (epoch %d) still running: %s\n", c.String("group"), f.Epoch, orDash(f.Stalled))
				case f.Result == "promoted":
					fmt.Printf("group %s: master moved from %s to %s (epoch %d)\n", c.String("group"), f.From, f.To, f.Epoch)
				default:
					fmt.Printf("group %s: switchover %s, master still %s\n", c.String("group"), f.Result, out.Master)
				}
			}); err != nil {
				return err
			}
			// A script that goes on to upgrade the old master must not take a switchover
			// that did not happen (or has not ended) for one that did.
			switch f := out.Failover; {
			case f == nil || !out.Done:
				return cli.Exit("the switchover has not ended: see 'redraft status'", 2)
			case f.Result != "promoted":
				return cli.Exit(fmt.Sprintf("the switchover ended %s: the master did not change", f.Result), 1)
			}
			return nil
		},
	}
}

// serverTable shows each group's servers as a node of its DC sees them: role, link, lag.
func serverTable(dcs []node.DCStatus) {
	var rows [][]string
	for _, d := range dcs {
		for _, g := range d.Groups {
			for _, v := range g.Servers {
				state := "up"
				if !v.Up {
					state = fmt.Sprintf("DOWN %dms", v.DownMS)
				}
				lag := "-"
				if v.LagBytes >= 0 {
					lag = strconv.FormatInt(v.LagBytes, 10) + "B"
				}
				rows = append(rows, []string{d.Name, g.ID, v.Addr, v.Listed, state, orDash(v.Role), orDash(v.Link), lag, orDash(v.Policy), g.Seen})
			}
			if f := g.Failover; f != nil {
				rows = append(rows, []string{d.Name, g.ID, "(failover)", fmt.Sprintf("epoch %d", f.Epoch), "from " + f.From,
					"run by " + f.Executor, orDash(f.Stalled), "-", "-", strings.Join(g.DownVotes, ",")})
			}
		}
	}
	if len(rows) > 0 {
		table([]string{"DC", "GROUP", "SERVER", "LISTED", "STATE", "ROLE", "LINK", "LAG", "POLICY", "SEEN BY"}, rows)
	}
}
