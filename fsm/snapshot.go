package fsm

import (
	"encoding/json"
	"fmt"
	"io"
)

// snapshotVersion is written in every snapshot's header.
const snapshotVersion = 1

type snapshotFile struct {
	Version int    `json:"version"`
	State   *State `json:"state"`
}

// WriteSnapshot writes the whole state to w.
func WriteSnapshot(w io.Writer, s *State) error {
	return json.NewEncoder(w).Encode(snapshotFile{Version: snapshotVersion, State: s})
}

// ReadSnapshot reads a state written by WriteSnapshot.
func ReadSnapshot(r io.Reader) (*State, error) {
	var f snapshotFile
	// A field this build does not know is refused, as in a command (Decode): a newer build's
	// state restored without it would differ from the others' for good.
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("fsm: read snapshot: %w", err)
	}
	if f.Version != snapshotVersion || f.State == nil {
		return nil, fmt.Errorf("fsm: snapshot version %d not supported (want %d)", f.Version, snapshotVersion)
	}
	s := New()
	st := f.State
	s.Index, s.NextMigrationID = st.Index, st.NextMigrationID
	for k, v := range st.Nodes {
		if v == nil {
			return nil, fmt.Errorf("fsm: snapshot: node %s is null", k)
		}
		s.Nodes[k] = v
	}
	for k, v := range st.DCs {
		if v == nil {
			return nil, fmt.Errorf("fsm: snapshot: datacenter %s is null", k)
		}
		if len(v.Slots) != NumSlots {
			return nil, fmt.Errorf("fsm: snapshot: datacenter %s has %d slots, want %d", k, len(v.Slots), NumSlots)
		}
		if v.Groups == nil {
			v.Groups = map[string]*Group{}
		}
		for id, g := range v.Groups {
			if g == nil {
				return nil, fmt.Errorf("fsm: snapshot: group %s of datacenter %s is null", id, k)
			}
		}
		s.DCs[k] = v
	}
	for k, v := range st.Settings {
		s.Settings[k] = v
	}
	for k, v := range st.Migrations {
		if v == nil {
			return nil, fmt.Errorf("fsm: snapshot: migration %d is null", k)
		}
		// freeze_acks is omitempty: an active migration's empty map comes back nil, and apply
		// writes to it (AckFreeze) and tests it (RemoveNode).
		if v.Active() && v.FreezeAcks == nil {
			v.FreezeAcks = map[string]uint64{}
		}
		s.Migrations[k] = v
	}
	if f := st.Flush; f != nil {
		// acks and deleted are omitempty: an active flush's empty maps come back nil.
		if f.Active() && f.Acks == nil {
			f.Acks = map[string]uint64{}
		}
		if f.Active() && f.Deleted == nil {
			f.Deleted = map[string]string{}
		}
		s.Flush = f
	}
	s.Flushes = st.Flushes
	s.DataFormat = st.DataFormat
	for k, v := range st.Removed {
		s.Removed[k] = v
	}
	for k, v := range st.Applied {
		s.Applied[k] = v
	}
	return s, nil
}
