// Command benchserver serves router.Server over a fixed cluster state without Raft, for
// benchmarks of the data plane: the slots are split evenly over the given Redis masters.
//
// Usage: benchserver -listen 127.0.0.1:7000 -backends 127.0.0.1:6379,127.0.0.1:6380
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redraft/redraft/fsm"
	"github.com/redraft/redraft/router"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7000", "RESP listen address")
	backends := flag.String("backends", "127.0.0.1:6379", "comma-separated Redis masters, one group each")
	pprof := flag.String("pprof", "", "serve net/http/pprof on this address")
	conns := flag.Int("conns", 1, "shared backend connections per group and database")
	flag.Parse()

	st := fsm.New()
	addrs := strings.Split(*backends, ",")
	per := fsm.NumSlots / len(addrs)
	idx := uint64(0)
	apply := func(c fsm.Command) {
		idx++
		var err error
		if st, err = fsm.ApplyCommand(st, idx, c); err != nil {
			log.Fatal(err)
		}
	}
	for i, a := range addrs {
		id := fmt.Sprintf("g%d", i+1)
		apply(&fsm.AddGroup{DC: "dc1", Group: fsm.Group{ID: id, Master: a}})
		to := (i+1)*per - 1
		if i == len(addrs)-1 {
			to = fsm.NumSlots - 1
		}
		apply(&fsm.AssignSlots{DC: "dc1", Group: id, Ranges: []fsm.SlotRange{{From: i * per, To: to}}})
	}
	s := router.New(router.Config{NodeID: "bench", DC: "dc1", BackendConns: *conns})
	s.SetState(st)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *pprof != "" {
		go func() { log.Println(http.ListenAndServe(*pprof, nil)) }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		_ = s.Close()
	}()
	if err := s.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
