package acl

import (
	"math"
	"math/bits"
)

// A static search tree over the sorted range starts of a table, answering
// "rule of the last range starting at or below x".
//
// The leaf level holds every range as (start, rule), so the rule is read
// from the cache line its start was compared in. Above it, upper[0] holds
// the first start of every leaf block, upper[k+1] the first key of every
// block of upper[k], up to a top level of one block. A lookup scans the top
// block, then one block per level below, the block named by the position
// found above it. Blocks are fixed-size arrays padded with the largest key,
// so the scans unroll without bounds checks, and the upper levels stay
// cached across lookups: a lookup among 100 000 ranges costs a couple of
// cache misses where a binary search costs six or more.
//
// The scan counts the keys <= x with arithmetic instead of stopping at the
// first greater one, so no branch depends on the address. Padding uses the
// largest key, which a query never has to look past: the all-ones address
// is answered from a stored rule instead. Measured on a 200 000-key IPv4
// table (one core, other work on the machine): plain binary search 84 ns; a
// looped compare-and-branch scan at fan 16, 66 ns; a looped arithmetic scan,
// 51 ns at fan 16, 45 ns at fan 8 and 70 ns at fan 32. Unrolling the scan
// over fixed-size blocks then took the 100 000-rule IPv6 lookup from ~72 ns
// to ~50 ns.

const (
	fan4 = 8 // 8 keys of 4 bytes; a leaf block of 8-byte entries is one cache line
	fan6 = 8 // 8 keys of 16 bytes, two cache lines
)

type (
	entry4 struct{ start, rule uint32 }
	leaf4  [fan4]entry4
	keys4  [fan4]uint32
)

type tree4 struct {
	leaf  []leaf4 // leaf[0][0].start == 0
	upper [][]keys4
	atMax uint32 // rule covering 255.255.255.255
}

func newTree4(entries []entry4) tree4 {
	if len(entries) == 0 {
		return tree4{atMax: noRule}
	}
	t := tree4{atMax: entries[len(entries)-1].rule}
	t.leaf = make([]leaf4, (len(entries)+fan4-1)/fan4)
	firsts := make([]uint32, len(t.leaf))
	for b := range t.leaf {
		for j := range fan4 {
			t.leaf[b][j] = entry4{math.MaxUint32, noRule}
			if i := b*fan4 + j; i < len(entries) {
				t.leaf[b][j] = entries[i]
			}
		}
		firsts[b] = t.leaf[b][0].start
	}
	for len(firsts) > 1 {
		level := make([]keys4, (len(firsts)+fan4-1)/fan4)
		up := make([]uint32, len(level))
		for b := range level {
			for j := range fan4 {
				level[b][j] = math.MaxUint32
				if i := b*fan4 + j; i < len(firsts) {
					level[b][j] = firsts[i]
				}
			}
			up[b] = level[b][0]
		}
		t.upper = append(t.upper, level)
		firsts = up
	}
	return t
}

// le4 is 1 if v <= x, else 0: x - v borrows into bit 63 only if v > x.
func le4(v, x uint32) int {
	return int(1 - (uint64(x)-uint64(v))>>63)
}

// find returns the rule of the last range starting at or below x.
func (t *tree4) find(x uint32) uint32 {
	if len(t.leaf) == 0 || x == math.MaxUint32 {
		return t.atMax
	}
	pos := 0 // block index in the level below the one being scanned
	for k := len(t.upper) - 1; k >= 0; k-- {
		b := &t.upper[k][pos]
		pos = pos*fan4 + le4(b[0], x) + le4(b[1], x) + le4(b[2], x) + le4(b[3], x) +
			le4(b[4], x) + le4(b[5], x) + le4(b[6], x) + le4(b[7], x) - 1
	}
	b := &t.leaf[pos]
	n := le4(b[0].start, x) + le4(b[1].start, x) + le4(b[2].start, x) + le4(b[3].start, x) +
		le4(b[4].start, x) + le4(b[5].start, x) + le4(b[6].start, x) + le4(b[7].start, x)
	return b[(n-1)&(fan4-1)].rule
}

type (
	entry6 struct {
		start u128
		rule  uint32
	}
	leaf6 [fan6]entry6
	keys6 [fan6]u128
)

var max128 = u128{math.MaxUint64, math.MaxUint64}

type tree6 struct {
	leaf  []leaf6 // leaf[0][0].start == ::
	upper [][]keys6
	atMax uint32 // rule covering ffff:...:ffff
}

func newTree6(entries []entry6) tree6 {
	if len(entries) == 0 {
		return tree6{atMax: noRule}
	}
	t := tree6{atMax: entries[len(entries)-1].rule}
	t.leaf = make([]leaf6, (len(entries)+fan6-1)/fan6)
	firsts := make([]u128, len(t.leaf))
	for b := range t.leaf {
		for j := range fan6 {
			t.leaf[b][j] = entry6{max128, noRule}
			if i := b*fan6 + j; i < len(entries) {
				t.leaf[b][j] = entries[i]
			}
		}
		firsts[b] = t.leaf[b][0].start
	}
	for len(firsts) > 1 {
		level := make([]keys6, (len(firsts)+fan6-1)/fan6)
		up := make([]u128, len(level))
		for b := range level {
			for j := range fan6 {
				level[b][j] = max128
				if i := b*fan6 + j; i < len(firsts) {
					level[b][j] = firsts[i]
				}
			}
			up[b] = level[b][0]
		}
		t.upper = append(t.upper, level)
		firsts = up
	}
	return t
}

// le6 is 1 if v <= x, else 0: x - v borrows out of the top word only if
// v > x.
func le6(v, x u128) int {
	_, borrow := bits.Sub64(x.lo, v.lo, 0)
	_, borrow = bits.Sub64(x.hi, v.hi, borrow)
	return int(1 - borrow)
}

// find returns the rule of the last range starting at or below x.
func (t *tree6) find(x u128) uint32 {
	if len(t.leaf) == 0 || x == max128 {
		return t.atMax
	}
	pos := 0
	for k := len(t.upper) - 1; k >= 0; k-- {
		b := &t.upper[k][pos]
		pos = pos*fan6 + le6(b[0], x) + le6(b[1], x) + le6(b[2], x) + le6(b[3], x) +
			le6(b[4], x) + le6(b[5], x) + le6(b[6], x) + le6(b[7], x) - 1
	}
	b := &t.leaf[pos]
	n := le6(b[0].start, x) + le6(b[1].start, x) + le6(b[2].start, x) + le6(b[3].start, x) +
		le6(b[4].start, x) + le6(b[5].start, x) + le6(b[6].start, x) + le6(b[7].start, x)
	return b[(n-1)&(fan6-1)].rule
}
