package router

import (
	"strings"

	"github.com/redraft/redraft/router/resp"
	"github.com/redraft/redraft/router/xdc"
)

// RESP3 on the cross-DC write path. With several DCs a write runs inside the WRITE script,
// and Redis hands a script the RESP2 form of a command's reply (a script that has not called
// redis.setresp(3)): a RESP3 session would get a bulk string where Redis sends a double, an
// array for a set or a map, flat score lists for nested pairs. The script's reply reaches a
// RESP3 session over a RESP3 connection, so its nulls are already RESP3's; reshape3 gives
// the rest back the types Redis 7 uses for that command (TestParity, threeDC/RESP3, compares
// them with redis-server's). A reply whose shape does not match is left as it is.

// shape3 is how a command's RESP3 reply differs from its RESP2 one.
type shape3 uint8

const (
	sh3Plain    shape3 = iota // the same, nulls aside
	sh3Double                 // a bulk string is a double
	sh3Doubles                // an array of doubles (ZMSCORE)
	sh3Set                    // an array is a set
	sh3Map                    // a flat array of keys and values is a map
	sh3PairsD                 // a flat [member, score, ...] is [[member, score], ...], scores doubles
	sh3Pairs                  // a flat [field, value, ...] is [[field, value], ...]
	sh3FlatD                  // [member, score]: the score is a double (ZPOPMIN without count)
	sh3BZPop                  // [key, member, score]: the score is a double
	sh3ZMPop                  // [key, [[member, score], ...]]: scores doubles
	sh3GeoCoord               // GEORADIUS ... WITHCOORD: each item's last element, [lon, lat], doubles
	sh3GeoPos                 // GEOPOS: each [lon, lat] doubles
	sh3Streams                // XREAD, XREADGROUP: [[key, entries], ...] as a map of key to entries
)

// shapeOf returns the RESP3 shape of argv's reply (argv[0] is the command's name).
func shapeOf(argv []string) shape3 {
	if len(argv) == 0 {
		return sh3Plain
	}
	has := func(word string) bool {
		for _, a := range argv[1:] {
			if strings.EqualFold(a, word) {
				return true
			}
		}
		return false
	}
	switch strings.ToLower(argv[0]) {
	case "zincrby", "zscore":
		return sh3Double
	case "zadd":
		if has("incr") {
			return sh3Double
		}
	case "zmscore":
		return sh3Doubles
	case "zpopmin", "zpopmax":
		if len(argv) > 2 {
			return sh3PairsD
		}
		return sh3FlatD
	case "bzpopmin", "bzpopmax":
		return sh3BZPop
	case "zmpop", "bzmpop":
		return sh3ZMPop
	case "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore", "zunion", "zinter", "zdiff", "zrandmember":
		if has("withscores") {
			return sh3PairsD
		}
	case "hrandfield":
		if has("withvalues") {
			return sh3Pairs
		}
	case "hgetall":
		return sh3Map
	case "xread", "xreadgroup":
		return sh3Streams
	case "lcs":
		if has("idx") {
			return sh3Map
		}
	case "smembers", "sinter", "sunion", "sdiff":
		return sh3Set
	case "spop":
		if len(argv) > 2 {
			return sh3Set
		}
	case "georadius", "georadiusbymember", "georadius_ro", "georadiusbymember_ro", "geosearch":
		if has("withcoord") {
			return sh3GeoCoord
		}
	case "geopos":
		return sh3GeoPos
	}
	return sh3Plain
}

// reshape3 returns reply, a WRITE call's reply to a RESP3 session, in RESP3: for one call
// (unit unset) argv's reply, else the array of calls' replies of a unit, where blocking[i],
// when set, names the blocking command call i stands for (unitReply gave it that shape).
func reshape3(reply []byte, calls []xdc.Call, unit bool, blocking []string) []byte {
	v, rest, ok := resp.Parse(reply)
	if !ok || len(rest) != 0 || v.IsError() || len(calls) == 0 {
		return reply
	}
	if !unit {
		return enc3(nil, v, shapeOf(calls[0].Args))
	}
	if v.Type != '*' || len(v.Elems) != len(calls) {
		return enc3(nil, v, sh3Plain)
	}
	b := resp.AppendArray(nil, len(v.Elems))
	for i, e := range v.Elems {
		argv := calls[i].Args
		if i < len(blocking) && blocking[i] != "" {
			argv = append([]string{blocking[i]}, argv[1:]...)
		}
		b = enc3(b, e, shapeOf(argv))
	}
	return b
}

// enc3 appends v in RESP3 by shape s.
func enc3(b []byte, v resp.Value, s shape3) []byte {
	switch {
	case v.IsNull():
		return append(b, "_\r\n"...)
	case v.IsError():
		return append(b, v.Raw...)
	}
	isArr := v.Type == '*'
	switch {
	case s == sh3Double && v.Type == '$':
		return resp.AppendDouble(b, v.Str, true)
	case s == sh3Doubles && isArr:
		b = resp.AppendArray(b, len(v.Elems))
		for _, e := range v.Elems {
			b = enc3(b, e, sh3Double)
		}
		return b
	case s == sh3Set && isArr:
		b = resp.AppendSet(b, len(v.Elems), true)
		return encAll(b, v.Elems)
	case s == sh3Map && isArr && len(v.Elems)%2 == 0:
		b = resp.AppendMap(b, len(v.Elems)/2, true)
		return encAll(b, v.Elems)
	case s == sh3Streams && isArr && allPairs(v.Elems): // XREAD's [[key, entries], ...]
		b = resp.AppendMap(b, len(v.Elems), true)
		for _, e := range v.Elems {
			b = encAll(b, e.Elems)
		}
		return b
	case (s == sh3PairsD || s == sh3Pairs) && isArr && len(v.Elems)%2 == 0:
		b = resp.AppendArray(b, len(v.Elems)/2)
		for i := 0; i < len(v.Elems); i += 2 {
			b = resp.AppendArray(b, 2)
			b = enc3(b, v.Elems[i], sh3Plain)
			if s == sh3PairsD {
				b = enc3(b, v.Elems[i+1], sh3Double)
			} else {
				b = enc3(b, v.Elems[i+1], sh3Plain)
			}
		}
		return b
	case s == sh3FlatD && isArr && len(v.Elems) == 2:
		b = resp.AppendArray(b, 2)
		b = enc3(b, v.Elems[0], sh3Plain)
		return enc3(b, v.Elems[1], sh3Double)
	case s == sh3BZPop && isArr && len(v.Elems) == 3:
		b = resp.AppendArray(b, 3)
		b = encAll(b, v.Elems[:2])
		return enc3(b, v.Elems[2], sh3Double)
	case s == sh3ZMPop && isArr && len(v.Elems) == 2:
		b = resp.AppendArray(b, 2)
		b = enc3(b, v.Elems[0], sh3Plain)
		b = resp.AppendArray(b, len(v.Elems[1].Elems))
		for _, p := range v.Elems[1].Elems {
			b = enc3(b, p, sh3FlatD)
		}
		return b
	case s == sh3GeoCoord && isArr:
		b = resp.AppendArray(b, len(v.Elems))
		for _, it := range v.Elems {
			if it.Type != '*' || len(it.Elems) == 0 {
				b = enc3(b, it, sh3Plain)
				continue
			}
			b = resp.AppendArray(b, len(it.Elems))
			b = encAll(b, it.Elems[:len(it.Elems)-1])
			b = enc3(b, it.Elems[len(it.Elems)-1], sh3Doubles)
		}
		return b
	case s == sh3GeoPos && isArr:
		b = resp.AppendArray(b, len(v.Elems))
		for _, p := range v.Elems {
			b = enc3(b, p, sh3Doubles)
		}
		return b
	case isArr:
		b = resp.AppendArray(b, len(v.Elems))
		return encAll(b, v.Elems)
	}
	return append(b, v.Raw...)
}

// allPairs reports whether every element is a two-element array.
func allPairs(vs []resp.Value) bool {
	for _, e := range vs {
		if e.Type != '*' || len(e.Elems) != 2 {
			return false
		}
	}
	return true
}

func encAll(b []byte, vs []resp.Value) []byte {
	for _, e := range vs {
		b = enc3(b, e, sh3Plain)
	}
	return b
}
