package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redraft/redraft/internal/testcert"
)

// TestPeerTLSBinary runs real node processes with TLS on the peer port, configured by flags:
// they join and forward admin changes over it, and a node without the cluster's certificate
// cannot join.
func TestPeerTLSBinary(t *testing.T) {
	c := NewCluster(t)
	dir := t.TempDir()
	ca := testcert.New(t, dir, "ca", nil, true)
	tlsArgs := func(name string) []string {
		cert := testcert.New(t, dir, name, ca, false)
		return []string{"--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile, "--tls-ca-file", ca.CertFile}
	}
	n1 := c.NewNode("n1", "dc1", tlsArgs("n1")...)
	n1.Start()
	n1.WaitHealthy(30 * time.Second)
	n2 := c.NewNode("n2", "dc1", tlsArgs("n2")...)
	n2.Start(n1.Peer)
	n2.WaitHealthy(30 * time.Second)
	n2.MustCLI("group", "add", "--dc", "dc1", "--id", "g1", "--master", "127.0.0.1:7001")
	waitFor(t, 10*time.Second, "both members see g1", func() error {
		for _, p := range []*proc{n1, n2} {
			st := p.Status()
			if len(st.Members) != 2 || len(st.DCs) != 1 || len(st.DCs[0].Groups) != 1 {
				return fmt.Errorf("%s: %d members, DCs %+v", p.ID, len(st.Members), st.DCs)
			}
		}
		return nil
	})

	// Another CA's certificate: the join is refused, and the node says why.
	other := testcert.New(t, dir, "other", nil, true)
	n3 := c.NewNode("n3", "dc1", "--tls-cert-file", other.CertFile, "--tls-key-file", other.KeyFile)
	n3.Start(n1.Peer)
	waitFor(t, 30*time.Second, "n3 reports the TLS failure", func() error {
		if log := n3.Log(); strings.Contains(log, "certificate") {
			return nil
		}
		return fmt.Errorf("n3 log so far:\n%s", n3.Log())
	})
	if st := n1.Status(); len(st.Members) != 2 {
		t.Fatalf("n3 joined without the cluster's certificate: %d members", len(st.Members))
	}
}
