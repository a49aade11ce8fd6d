package migrate

import (
	"context"

	"github.com/redraft/redraft/fsm"
)

// SlotSetOf returns the set of the state's inclusive slot ranges; out-of-range slots are
// dropped (the FSM validates ranges before they get here).
func SlotSetOf(ranges []fsm.SlotRange) *SlotSet {
	s := new(SlotSet)
	for _, r := range ranges {
		for i := max(r.From, 0); i <= r.To && i < NumSlots; i++ {
			s.Add(i)
		}
	}
	return s
}

// MoveJob is the default RunMover: it moves the job's slots from its source group's master to
// its target group's master with MoveSlots and returns when the source holds none of them.
func MoveJob(ctx context.Context, job Job) error {
	m, err := New(Config{
		Source: Endpoint{Addr: job.Source.Master, Password: job.Source.Password},
		Target: Endpoint{Addr: job.Target.Master, Password: job.Target.Password},
	})
	if err != nil {
		return err
	}
	defer m.Close()
	return m.MoveSlots(ctx, *job.Slots, MoveOptions{Rate: job.Rate, Paused: job.Paused, Progress: job.Progress})
}
