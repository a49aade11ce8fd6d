package migrate

import (
	"context"

	"github.com/redraft/redraft/fsm"
)

// SlotSetOf returns the set of the state's inclusive slot ranges; out-of-range slots are
// dropped (the FSM validates ranges before they get here).
func SlotSetOf(ranges []fsm.SlotRange) *SlotSet {
	s := new(SlotSet)
	s.AddRanges(ranges)
	return s
}

// AddRanges puts the state's inclusive slot ranges in the set, as SlotSetOf.
func (s *SlotSet) AddRanges(ranges []fsm.SlotRange) {
	for _, r := range ranges {
		for i := max(r.From, 0); i <= r.To && i < NumSlots; i++ {
			s.Add(i)
		}
	}
}

// MoveJob is the default RunMover: it moves the job's slots from its source group's master to
// its target group's master with MoveSlots and returns when the source holds none of them.
//
// The run is fenced (fence.go): every step checks that the run is not over; a run back first
// marks the forward run over, so no forward step can follow; and once the source holds no key
// of the slots, the run is marked over before MoveJob returns. A run found over at the start has
// already moved everything: only the switch is left to commit.
func MoveJob(ctx context.Context, job Job) error {
	mg, back := job.Migration, job.Migration.Cancelling
	field := RunFence(mg, back)
	m, err := New(Config{
		Source:     EndpointOf(&job.Source),
		Target:     EndpointOf(&job.Target),
		Fence:      field,
		KeepTarget: job.KeepTarget,
		Logger:     job.Logger,
		Owner:      job.Owner,
	})
	if err != nil {
		return err
	}
	defer m.Close()
	onSource, onTarget, err := m.Over(ctx, field)
	if err != nil {
		return err
	}
	if onSource {
		return nil
	}
	// Over on the target only, and only with a nonce: a nonce-less field (an older build's
	// migration) on the target may be another cluster's mark of the same migration id, and
	// switching on it would leave every key on the source.
	if onTarget && mg.Nonce != "" {
		// The source failed over to a replica that lacked the mark, and perhaps the last
		// pass's deletes: every key had moved, and every restore into the target is refused
		// now (its mark), so moving again only failed, for good, and the migration stayed
		// migrating. The run is over: mark the source again and let the switch commit. Copies
		// the promoted replica kept stay behind in slots it no longer serves (left open:
		// migrate/DESIGN.md, "Failures and crash recovery").
		if job.Logger != nil {
			job.Logger.Warn("migration run over on the target but not on the source (a failover lost the mark): switching without moving again; stale copies may remain on the source",
				"migration", mg.ID, "run", mg.Run())
		}
		return markOver(ctx, m, mg, back)
	}
	if back {
		if err := markOver(ctx, m, mg, false); err != nil {
			return err
		}
	}
	if err := m.MoveSlots(ctx, *job.Slots, MoveOptions{Rate: job.Rate, Paused: job.Paused, Progress: job.Progress}); err != nil {
		return err
	}
	return markOver(ctx, m, mg, back)
}

// markOver marks run back of mg over: its field (RunFence), and the name older builds check
// (FenceField), so that a stale mover of an older build in a cluster being upgraded stops too.
func markOver(ctx context.Context, m *Mover, mg *fsm.Migration, back bool) error {
	if err := m.MarkOver(ctx, RunFence(mg, back)); err != nil {
		return err
	}
	if mg.Nonce == "" {
		return nil
	}
	return m.MarkOver(ctx, FenceField(mg.ID, back))
}
