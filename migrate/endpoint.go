package migrate

import (
	"time"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/internal/backendacl"
)

// EndpointOf returns the endpoint of g's master as redraft's internal ACL user
// (internal/backendacl): movers run scans, batch copies and the chunked copy as that user, and its
// dialer creates the users with the group's admin credentials when the server lacks them.
func EndpointOf(g *fsm.Group) Endpoint {
	acc := backendacl.ForGroup(g)
	cr := acc.Internal()
	return Endpoint{Addr: g.Master, Username: cr.User, Password: cr.Password, Dialer: acc.Dialer(cr, 5*time.Second)}
}
