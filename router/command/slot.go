package command

// NumSlots is the number of hash slots.
const NumSlots = 16384

var crc16tab [256]uint16

func init() {
	for i := range crc16tab {
		crc := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		crc16tab[i] = crc
	}
}

// CRC16 is CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^c]
	}
	return crc
}

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

// Slot returns the key's hash slot, as Redis Cluster's keyHashSlot.
func Slot(key []byte) int { return int(CRC16(HashTag(key)) & (NumSlots - 1)) }
