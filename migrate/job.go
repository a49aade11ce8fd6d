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
//
// The run is fenced (fence.go): every step checks that the run is not over; a run back first
// marks the forward run over, so no forward step can follow; and once the source holds no key
// of the slots, the run is marked over before MoveJob returns. A run found over at the start has
// already moved everything: only the switch is left to commit.
func MoveJob(ctx context.Context, job Job) error {
	id, back := job.Migration.ID, job.Migration.Cancelling
	field := FenceField(id, back)
	m, err := New(Config{
		Source:     EndpointOf(&job.Source),
		Target:     EndpointOf(&job.Target),
		Fence:      field,
		KeepTarget: job.KeepTarget,
	})
	if err != nil {
		return err
	}
	defer m.Close()
	if over, err := m.Over(ctx, field); err != nil {
		return err
	} else if over {
		return nil
	}
	if back {
		if err := m.MarkOver(ctx, FenceField(id, false)); err != nil {
			return err
		}
	}
	if err := m.MoveSlots(ctx, *job.Slots, MoveOptions{Rate: job.Rate, Paused: job.Paused, Progress: job.Progress}); err != nil {
		return err
	}
	return m.MarkOver(ctx, field)
}
