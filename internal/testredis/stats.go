package testredis

import (
	"strconv"
	"strings"
)

// CommandStat reads field ("calls", "usec"...) of command cmd ("evalsha", "client|unblock") from
// the text of INFO commandstats; 0 when the command has not run.
func CommandStat(info, cmd, field string) float64 {
	for _, l := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, field+"="); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n
			}
		}
	}
	return 0
}
