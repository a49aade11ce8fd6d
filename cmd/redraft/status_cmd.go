package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/node"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the cluster: leader, members, datacenters, groups and slots",
		UsageText: "redraft --admin 127.0.0.1:8380 status [--json]",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			st, err := fetchStatus(c)
			if err != nil {
				return err
			}
			return output(c, st, func() {
				fmt.Printf("leader: %s (%s)   term: %d   applied index: %d   data format: %d   asked: %s\n\n", orDash(st.Leader), orDash(st.LeaderPeer), st.Term, st.AppliedIndex, st.DataFormat, st.Node)
				if st.DataFormatWaiting != "" {
					fmt.Printf("data format %d is not raised yet: %s\n\n", st.DataFormat, st.DataFormatWaiting)
				}
				memberTable(st.Members, st.DCs)
				fmt.Println()
				groupTable(st.DCs)
				fmt.Println()
				serverTable(st.DCs)
				if len(st.Replication) > 0 {
					fmt.Println()
					var rows [][]string
					for _, p := range st.Replication {
						rows = append(rows, []string{p.From, p.To, p.State, ms(p.LagMS), ms(p.LagP50MS), ms(p.LagP99MS),
							strconv.FormatInt(p.Pending, 10), strconv.FormatInt(p.Outbox, 10), strconv.Itoa(p.Copying),
							strconv.FormatInt(p.Shipped, 10), orDash(p.Error)})
					}
					table([]string{"FROM", "TO", "STATE", "LAG", "P50", "P99", "PENDING", "OUTBOX", "COPYING", "SHIPPED", "ERROR"}, rows)
				}
				if len(st.Migrations) > 0 {
					fmt.Println()
					var rows [][]string
					for _, m := range st.Migrations {
						var r []string
						for _, s := range m.Slots {
							r = append(r, s.String())
						}
						rows = append(rows, []string{strconv.FormatUint(m.ID, 10), m.DC, strings.Join(r, " "), m.From, m.To, string(m.State), fmt.Sprintf("%d/%d", m.KeysMoved, m.KeysTotal), orDash(strings.Join(st.MigrationWaiting[m.ID], ","))})
					}
					table([]string{"MIGRATION", "DC", "SLOTS", "FROM", "TO", "STATE", "KEYS", "WAITING FOR"}, rows)
				}
			})
		},
	}
}

// fetchStatus asks the --admin node for the cluster status.
func fetchStatus(c *cli.Context) (node.Status, error) {
	cx, cancel := ctx(c)
	defer cancel()
	return adminClient(c).Status(cx)
}

// ms formats milliseconds for a table.
func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fs", v/1000)
	}
	return fmt.Sprintf("%.1fms", v)
}

func memberTable(ms []node.Member, dcs []node.DCStatus) {
	owned := map[string]int{}
	for _, d := range dcs {
		for id, n := range d.Owners {
			owned[id] = n
		}
	}
	var rows [][]string
	for _, m := range ms {
		role, serving := m.Role, "yes"
		if m.Error != "" {
			role, serving = "UNREACHABLE", "-"
		} else if !m.Acting {
			serving = "no"
		}
		rows = append(rows, []string{m.ID, m.DC, orDash(m.Rack), role, orDash(m.Suffrage), strconv.FormatUint(m.AppliedIndex, 10), serving, strconv.Itoa(owned[m.ID]), m.Listen, m.Peer, m.Admin})
	}
	table([]string{"NODE", "DC", "RACK", "ROLE", "SUFFRAGE", "APPLIED", "SERVING", "OWNS", "LISTEN", "PEER", "ADMIN"}, rows)
	for _, m := range ms {
		if m.Error == "" && !m.Acting && m.NotActing != "" {
			fmt.Printf("%s does not serve keyed requests: %s\n", m.ID, m.NotActing)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func healthCommand() *cli.Command {
	return &cli.Command{
		Name:      "health",
		Usage:     "exit 0 when the node at --admin is a registered member that knows a leader (for health checks)",
		UsageText: "redraft --admin 127.0.0.1:8380 health [--json]",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			cx, cancel := ctx(c)
			defer cancel()
			h, err := adminClient(c).Health(cx)
			if err != nil {
				return err
			}
			return output(c, h, func() { fmt.Printf("ok: node %v, leader %v\n", h["node"], h["leader"]) })
		},
	}
}
