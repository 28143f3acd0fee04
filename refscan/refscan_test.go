package refscan

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
)

// sampleRefs returns n distinct tokens, as derivation hashes are written:
// base32 over Alphabet of a blake3-256 sum.
func sampleRefs(n int) []string {
	enc := base32.NewEncoding(Alphabet).WithPadding(base32.NoPadding)
	ss := make([]string, n)
	for i := range ss {
		sum := blake3.Sum256([]byte(fmt.Sprintf("ref %d", i)))
		ss[i] = enc.EncodeToString(sum[:])
	}
	return ss
}

// scanChunks feeds stream to a new matcher in chunks of the given sizes
// (cycled) and returns what it found.
func scanChunks(s *Scanner, stream []byte, sizes ...int) []string {
	m := s.NewMatcher()
	for i := 0; len(stream) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(stream))
		m.Write(stream[:n])
		stream = stream[n:]
	}
	return m.Found()
}

// naiveRefs is what a matcher must find: every candidate that occurs
// anywhere in the stream.
func naiveRefs(ss []string, stream []byte) []string {
	var out []string
	for _, h := range ss {
		if bytes.Contains(stream, []byte(h)) {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

func TestAlphabet(t *testing.T) {
	for c := range 256 {
		if got, want := isHashByte[c], strings.IndexByte(Alphabet, byte(c)) >= 0; got != want {
			t.Errorf("isHashByte[%q] = %v, want %v", byte(c), got, want)
		}
	}
	for _, s := range sampleRefs(3) {
		if len(s) != TokenLen {
			t.Errorf("a derivation hash's string form has %d bytes, want TokenLen = %d", len(s), TokenLen)
		}
	}
}

func TestRefMatcherChunks(t *testing.T) {
	ss := sampleRefs(4)
	s := New(ss[:3]) // ss[3] is not a candidate
	stream := []byte("#!/bin/sh\nexec /heph/store/" + ss[0] + "-bash/bin/bash \"$@\"\n" +
		"\x00\x01" + ss[1] + "\x00" + ss[3] + "/" + ss[1][:51] + "\n" + ss[2])
	want := []string{ss[0], ss[1], ss[2]}
	slices.Sort(want)
	for size := 1; size <= len(stream); size++ {
		if got := scanChunks(s, stream, size); !slices.Equal(got, want) {
			t.Errorf("chunks of %d: found %v, want %v", size, got, want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		sizes := []int{1 + r.IntN(60), 1 + r.IntN(5), 1 + r.IntN(120)}
		if got := scanChunks(s, stream, sizes...); !slices.Equal(got, want) {
			t.Errorf("chunks of %v: found %v, want %v", sizes, got, want)
		}
	}
}

// A hash inside a longer run of alphabet characters is found at every
// offset (as Nix does), fed whole or byte by byte.
func TestRefMatcherInsideLongerRun(t *testing.T) {
	ss := sampleRefs(1)
	s := New(ss)
	filler := strings.Repeat(Alphabet, 4)
	for before := range 2*TokenLen + 3 {
		for _, after := range []int{0, 1, 51, 52, 53} {
			stream := []byte("-" + filler[:before] + ss[0] + filler[:after] + "-")
			for _, size := range []int{len(stream), 1, 7, 52} {
				if got := scanChunks(s, stream, size); len(got) != 1 || got[0] != ss[0] {
					t.Fatalf("%d alphabet bytes before, %d after, chunks of %d: found %v, want %v",
						before, after, size, got, ss[0])
				}
			}
		}
	}
}

func TestRefMatcherNearMisses(t *testing.T) {
	ss := sampleRefs(1)
	s := New(ss)
	h := ss[0]
	changed := []byte(h)
	changed[30] = map[bool]byte{true: 'a', false: 'b'}[changed[30] != 'a']
	for name, stream := range map[string]string{
		"truncated":     h[:51],
		"one changed":   string(changed),
		"broken by e":   h[:26] + "e" + h[26:],
		"broken by NUL": h[:26] + "\x00" + h[26:],
		"upper case":    strings.ToUpper(h),
		"empty":         "",
	} {
		if got := scanChunks(s, []byte(stream), 1, 3, 100); len(got) != 0 {
			t.Errorf("%s: found %v, want nothing", name, got)
		}
	}

	// A hash split across two streams is not one.
	m := s.NewMatcher()
	m.WriteString(h[:20])
	m.EndStream()
	m.WriteString(h[20:])
	if got := m.Found(); len(got) != 0 {
		t.Errorf("split across streams: found %v, want nothing", got)
	}
	m.Reset()
	m.WriteString(h)
	if got := m.Found(); len(got) != 1 {
		t.Errorf("after Reset: found %v, want %v", got, ss[0])
	}
	m.Reset()
	if got := m.Found(); len(got) != 0 {
		t.Errorf("Reset kept %v", got)
	}
}

func TestRefMatcherNoCandidates(t *testing.T) {
	ss := sampleRefs(1)
	if got := scanChunks(New(nil), []byte(ss[0]), 10); len(got) != 0 {
		t.Errorf("found %v with no candidates", got)
	}
}

// Random streams rich in alphabet bytes, with candidates and near misses
// planted, fed in random chunks, against bytes.Contains.
func TestRefMatcherRandom(t *testing.T) {
	ss := sampleRefs(40)
	s := New(ss[:30])
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 300 {
		var b []byte
		for len(b) < 2000 {
			switch r.IntN(6) {
			case 0:
				b = append(b, ss[r.IntN(len(ss))]...)
			case 1:
				h := ss[r.IntN(len(ss))]
				b = append(b, h[:r.IntN(len(h))]...)
			case 2:
				b = append(b, byte(r.Uint32()))
			default:
				for range r.IntN(30) {
					b = append(b, Alphabet[r.IntN(len(Alphabet))])
				}
			}
		}
		want := naiveRefs(ss[:30], b)
		sizes := []int{1 + r.IntN(80), 1 + r.IntN(3), 1 + r.IntN(1000)}
		if got := scanChunks(s, b, sizes...); !slices.Equal(got, want) {
			t.Fatalf("stream %d, chunks of %v: found %v, want %v", iter, sizes, got, want)
		}
	}
}

func TestRefMatcherFoundSorted(t *testing.T) {
	ss := sampleRefs(20)
	s := New(ss)
	got := scanChunks(s, []byte(strings.Join(ss, " ")), 4096)
	if len(got) != len(ss) {
		t.Fatalf("found %d, want %d", len(got), len(ss))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Errorf("Found not in string order: %s before %s", got[i-1], got[i])
		}
	}
}

// Run with -race: matchers share their scanner.
func TestRefScannerConcurrent(t *testing.T) {
	ss := sampleRefs(8)
	s := New(ss)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			stream := []byte(strings.Repeat("x", i) + ss[i] + "-")
			for range 100 {
				if got := scanChunks(s, stream, i+1); len(got) != 1 || got[0] != ss[i] {
					t.Errorf("goroutine %d: found %v, want %v", i, got, ss[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkRefMatcher(b *testing.B) {
	ss := sampleRefs(200)
	s := New(ss)
	r := rand.New(rand.NewPCG(5, 6))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	alphabet := make([]byte, 1<<20)
	for i := range alphabet {
		alphabet[i] = Alphabet[r.IntN(len(Alphabet))]
	}
	for name, data := range map[string][]byte{"random": random, "all-alphabet": alphabet} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			m := s.NewMatcher()
			for b.Loop() {
				m.Write(data)
			}
		})
	}
}
