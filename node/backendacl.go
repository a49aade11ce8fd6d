package node

import (
	"context"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
)

// PrepareGroup creates redraft's two ACL users on every server of g with the group's admin
// credentials (docs/security.md, "Backends") before the group is proposed: credentials a
// server refuses fail the request with an error that says what to fix. Servers this node
// cannot reach are logged and left to the routers, which create the users when they connect.
func (n *Node) PrepareGroup(ctx context.Context, g *fsm.Group) error {
	servers := append([]string{g.Master}, g.Replicas...)
	unreachable, err := backendacl.ForGroup(g).Prepare(ctx, servers)
	if err != nil {
		return &fsm.Error{Code: "invalid", Msg: err.Error()}
	}
	if len(unreachable) > 0 {
		n.log.Warn("backend ACL users not created: servers unreachable from this node; routers create them when they connect",
			"group", g.ID, "servers", unreachable)
	}
	return nil
}
