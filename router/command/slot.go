package command

import "github.com/redraft/redraft/migrate"

// NumSlots is the number of hash slots.
const NumSlots = migrate.NumSlots

// HashTag returns the part of key that is hashed: the text between the first '{' and the
// next '}' when it is not empty, else the whole key (so "{}x" hashes whole).
func HashTag(key []byte) []byte {
	for i, c := range key {
		if c == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j == i+1 {
						return key
					}
					return key[i+1 : j]
				}
			}
			return key
		}
	}
	return key
}

// Slot returns the key's hash slot, as Redis Cluster's keyHashSlot (one implementation for
// the whole project: migrate.Slot).
func Slot(key []byte) int { return migrate.Slot(key) }
