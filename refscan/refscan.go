// Package refscan finds runtime references in byte streams: which of a set
// of candidate tokens (the 52-character string forms of derivation
// hashes, over the store's base32 alphabet) occur anywhere in them, even
// inside longer runs of the alphabet, as Nix finds them. The store scans
// every output with it while hashing (docs/store.md, "References"). It
// imports nothing of hephc: the store gives it its candidates' strings.
package refscan

import (
	"encoding/binary"
	"slices"
)

// Alphabet is the alphabet of a derivation hash's string form (the
// store's base32): a token uses these 32 bytes and no others.
const Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// TokenLen is the length of a token: a derivation hash's string form.
const TokenLen = 52

// isHashByte[c] reports whether c is in Alphabet.
var isHashByte = func() (t [256]bool) {
	for i := 0; i < len(Alphabet); i++ {
		t[Alphabet[i]] = true
	}
	return t
}()

// prefilterBits is log2 of the size in bits of Scanner.filter.
const prefilterBits = 16

// prefilterIndex maps the first 8 bytes of a 52-byte window to a bit of
// Scanner.filter (multiplicative hashing; any mix would do).
func prefilterIndex(w []byte) uint64 {
	return (binary.LittleEndian.Uint64(w) * 0x9e3779b97f4a7c15) >> (64 - prefilterBits)
}

// A Scanner finds references to a fixed set of candidates (derivation
// hashes) in byte streams: every occurrence of a candidate's 52-character
// string form, wherever it stands. This is how the runtime references of an
// output are found (as Nix does): an output refers to an input when the
// input's hash appears anywhere in it.
//
// A hash is found even when it is part of a longer run of alphabet
// characters ("x<hash>y" with x and y in the alphabet): every 52-character
// window of every run is looked up. Missing a reference would let garbage
// collection delete a path still in use; a spurious one only keeps a path
// alive, and needs 260 bits to match by chance.
//
// A Scanner is immutable once made and safe for concurrent use by any
// number of Matchers.
type Scanner struct {
	hashes map[string]struct{}
	// filter has bit prefilterIndex(s) set for every candidate s, so that
	// most windows are rejected without hashing 52 bytes for a map lookup.
	filter [1 << prefilterBits / 64]uint64
}

// New returns a scanner for the given candidates, the string forms of
// derivation hashes. Duplicates are harmless, and a candidate that is not
// TokenLen bytes of Alphabet can never be found; with no candidates,
// matchers find nothing and cost nothing.
func New(candidates []string) *Scanner {
	s := &Scanner{hashes: make(map[string]struct{}, len(candidates))}
	for _, c := range candidates {
		if len(c) != TokenLen {
			continue
		}
		s.hashes[c] = struct{}{}
		i := prefilterIndex([]byte(c))
		s.filter[i/64] |= 1 << (i % 64)
	}
	return s
}

// NewMatcher returns a matcher for one stream.
func (s *Scanner) NewMatcher() *Matcher {
	return &Matcher{s: s, found: make(map[string]struct{})}
}

// A Matcher scans one byte stream, fed to Write in chunks of any size,
// for its scanner's candidates. Occurrences that straddle chunks are found.
// A Matcher is not safe for concurrent use.
type Matcher struct {
	s     *Scanner
	found map[string]struct{}
	// tail holds the stream's last ntail bytes, all in the alphabet: the
	// start of a hash that the next chunk may complete. ntail < 52.
	tail  [TokenLen - 1]byte
	ntail int
	// join is scratch space for tail plus the next chunk's first bytes.
	join [2 * (TokenLen - 1)]byte
}

// Write scans p as the continuation of the stream. It never fails.
func (m *Matcher) Write(p []byte) (int, error) {
	if len(m.s.hashes) == 0 || len(p) == 0 {
		return len(p), nil
	}
	const n = TokenLen
	if m.ntail > 0 {
		// Windows that start in the tail end within p's first n-1 bytes.
		j := append(m.join[:0], m.tail[:m.ntail]...)
		j = append(j, p[:min(len(p), n-1)]...)
		m.scan(j, m.ntail)
	}
	m.scan(p, len(p))

	// The new tail: the stream's trailing run of alphabet bytes, capped.
	r := 0
	for r < len(p) && r < n-1 && isHashByte[p[len(p)-1-r]] {
		r++
	}
	if r == len(p) && r < n-1 {
		// p is all alphabet and short: the old tail continues.
		keep := min(m.ntail, n-1-r)
		copy(m.tail[:], m.tail[m.ntail-keep:m.ntail])
		copy(m.tail[keep:], p)
		m.ntail = keep + r
	} else {
		m.ntail = copy(m.tail[:], p[len(p)-r:])
	}
	return len(p), nil
}

// WriteString is Write for a string.
func (m *Matcher) WriteString(s string) (int, error) { return m.Write([]byte(s)) }

// scan records the candidates found in b at every offset below limit.
func (m *Matcher) scan(b []byte, limit int) {
	const n = TokenLen
	i := 0
	for i < limit && i+n <= len(b) {
		// Is b[i:i+n] all alphabet? Check from the end, so that a
		// non-alphabet byte skips every window that contains it.
		j := i + n - 1
		for j >= i && isHashByte[b[j]] {
			j--
		}
		if j >= i {
			i = j + 1
			continue
		}
		// Slide along the run, one window per offset.
		for {
			m.lookup(b[i : i+n])
			i++
			if i >= limit || i+n > len(b) {
				return
			}
			if !isHashByte[b[i+n-1]] {
				i += n
				break
			}
		}
	}
}

func (m *Matcher) lookup(w []byte) {
	k := prefilterIndex(w)
	if m.s.filter[k/64]&(1<<(k%64)) == 0 {
		return
	}
	if _, ok := m.s.hashes[string(w)]; ok {
		m.found[string(w)] = struct{}{}
	}
}

// EndStream forgets the stream's tail, so that the next Write starts a new
// stream; what was found is kept.
func (m *Matcher) EndStream() { m.ntail = 0 }

// Reset forgets the stream and what was found.
func (m *Matcher) Reset() {
	m.ntail = 0
	clear(m.found)
}

// Found returns the candidates found so far, sorted.
func (m *Matcher) Found() []string {
	out := make([]string, 0, len(m.found))
	for h := range m.found {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}
