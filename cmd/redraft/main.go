// Command redraft runs a redraft node and administers a redraft cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/redraft/redraft/node"
)

func main() {
	app := &cli.App{
		Name:  "redraft",
		Usage: "a sharded, cross-datacenter Redis proxy cluster with embedded Raft metadata",
		Description: `Run a node with 'redraft node start' (first node) or 'redraft node join --seed' (the others),
then administer the cluster through any node's admin address.

Example:
   redraft node start --id n1 --dc dc1 --data-dir data/n1
   redraft --admin 127.0.0.1:8380 group add --dc dc1 --id g1 --master 127.0.0.1:6379
   redraft slots assign --dc dc1 --group g1 0-16383
   redis-cli -p 6380 set hello world`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "admin", Value: "127.0.0.1:8380", EnvVars: []string{"REDRAFT_ADMIN"}, Usage: "admin address (HOST:PORT, or https://HOST:PORT with admin TLS) of any node"},
			&cli.StringFlag{Name: "admin-token", EnvVars: []string{"REDRAFT_ADMIN_TOKEN"}, DefaultText: "unset", Usage: "the admin token of the cluster's nodes (their admin_token); prefer the environment variable, which ps does not show"},
			&cli.StringFlag{Name: "admin-ca", EnvVars: []string{"REDRAFT_ADMIN_CA"}, Usage: "PEM CA file the admin port's certificate chains to (implies https); an https:// --admin trusts the system's CAs"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of tables"},
		},
		Commands: commands(),
		ExitErrHandler: func(c *cli.Context, err error) {
			if err == nil {
				return
			}
			var ec cli.ExitCoder
			if errors.As(err, &ec) {
				cli.HandleExitCoder(err)
				return
			}
			fmt.Fprintln(os.Stderr, "redraft:", err)
			os.Exit(1)
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "redraft:", err)
		os.Exit(1)
	}
}

// commands returns the CLI's commands.
func commands() []*cli.Command {
	return []*cli.Command{
		nodeCommand(),
		groupCommand(),
		slotsCommand(),
		migrateCommand(),
		migrationsCommand(),
		rebalanceCommand(),
		statusCommand(),
		configCommand(),
		healthCommand(),
	}
}

// adminClient returns the admin client for the --admin address, with the admin token and CA.
func adminClient(c *cli.Context) *node.Client {
	cl, err := node.NewClientWith(c.String("admin"), node.ClientOptions{Token: c.String("admin-token"), CAFile: c.String("admin-ca")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "redraft: --admin-ca:", err)
		os.Exit(1)
	}
	return cl
}

// ctx returns a context bounded for one admin call.
func ctx(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, 30*time.Second)
}
