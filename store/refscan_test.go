package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sampleRefs returns n distinct derivation hashes and their string forms.
func sampleRefs(n int) ([]DrvHash, []string) {
	hs := make([]DrvHash, n)
	ss := make([]string, n)
	for i := range hs {
		hs[i] = HashDerivation([]byte(fmt.Sprintf("ref %d", i)))
		ss[i] = hs[i].String()
	}
	return hs, ss
}

// scanChunks feeds stream to a new matcher in chunks of the given sizes
// (cycled) and returns what it found.
func scanChunks(s *RefScanner, stream []byte, sizes ...int) []DrvHash {
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
func naiveRefs(hs []DrvHash, stream []byte) []DrvHash {
	var out []DrvHash
	for _, h := range hs {
		if bytes.Contains(stream, []byte(h.String())) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b DrvHash) int { return bytes.Compare(a[:], b[:]) })
	return out
}

func TestHashStringLenConst(t *testing.T) {
	if hashStringLen != HashStringLen {
		t.Fatalf("hashStringLen = %d, want HashStringLen = %d", hashStringLen, HashStringLen)
	}
	for c := range 256 {
		if got, want := isHashByte[c], strings.IndexByte(hashAlphabet, byte(c)) >= 0; got != want {
			t.Errorf("isHashByte[%q] = %v, want %v", byte(c), got, want)
		}
	}
	for v := range 32 {
		// The first character encodes the top 5 bits of the first byte.
		if got := hashEncoding.EncodeToString([]byte{byte(v << 3)})[0]; got != hashAlphabet[v] {
			t.Errorf("hashEncoding encodes %d as %q, hashAlphabet says %q", v, got, hashAlphabet[v])
		}
	}
}

func TestRefMatcherChunks(t *testing.T) {
	hs, ss := sampleRefs(4)
	s := NewRefScanner(hs[:3]) // hs[3] is not a candidate
	stream := []byte("#!/bin/sh\nexec /heph/store/" + ss[0] + "-bash/bin/bash \"$@\"\n" +
		"\x00\x01" + ss[1] + "\x00" + ss[3] + "/" + ss[1][:51] + "\n" + ss[2])
	want := []DrvHash{hs[0], hs[1], hs[2]}
	slices.SortFunc(want, func(a, b DrvHash) int { return bytes.Compare(a[:], b[:]) })
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
	hs, ss := sampleRefs(1)
	s := NewRefScanner(hs)
	filler := strings.Repeat("0123456789abcdfghijklmnpqrsvwxyz", 4)
	for before := range 2*HashStringLen + 3 {
		for _, after := range []int{0, 1, 51, 52, 53} {
			stream := []byte("-" + filler[:before] + ss[0] + filler[:after] + "-")
			for _, size := range []int{len(stream), 1, 7, 52} {
				if got := scanChunks(s, stream, size); len(got) != 1 || got[0] != hs[0] {
					t.Fatalf("%d alphabet bytes before, %d after, chunks of %d: found %v, want %v",
						before, after, size, got, hs[0])
				}
			}
		}
	}
}

func TestRefMatcherNearMisses(t *testing.T) {
	hs, ss := sampleRefs(1)
	s := NewRefScanner(hs)
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
	m.endStream()
	m.WriteString(h[20:])
	if got := m.Found(); len(got) != 0 {
		t.Errorf("split across streams: found %v, want nothing", got)
	}
	m.Reset()
	m.WriteString(h)
	if got := m.Found(); len(got) != 1 {
		t.Errorf("after Reset: found %v, want %v", got, hs[0])
	}
	m.Reset()
	if got := m.Found(); len(got) != 0 {
		t.Errorf("Reset kept %v", got)
	}
}

func TestRefMatcherNoCandidates(t *testing.T) {
	_, ss := sampleRefs(1)
	if got := scanChunks(NewRefScanner(nil), []byte(ss[0]), 10); len(got) != 0 {
		t.Errorf("found %v with no candidates", got)
	}
}

// Random streams rich in alphabet bytes, with candidates and near misses
// planted, fed in random chunks, against bytes.Contains.
func TestRefMatcherRandom(t *testing.T) {
	hs, ss := sampleRefs(40)
	s := NewRefScanner(hs[:30])
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
					b = append(b, hashAlphabet[r.IntN(len(hashAlphabet))])
				}
			}
		}
		want := naiveRefs(hs[:30], b)
		sizes := []int{1 + r.IntN(80), 1 + r.IntN(3), 1 + r.IntN(1000)}
		if got := scanChunks(s, b, sizes...); !slices.Equal(got, want) {
			t.Fatalf("stream %d, chunks of %v: found %v, want %v", iter, sizes, got, want)
		}
	}
}

func TestRefMatcherFoundSorted(t *testing.T) {
	hs, ss := sampleRefs(20)
	s := NewRefScanner(hs)
	got := scanChunks(s, []byte(strings.Join(ss, " ")), 4096)
	if len(got) != len(hs) {
		t.Fatalf("found %d, want %d", len(got), len(hs))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].String() >= got[i].String() {
			t.Errorf("Found not in string order: %s before %s", got[i-1], got[i])
		}
	}
}

// Run with -race: matchers share their scanner.
func TestRefScannerConcurrent(t *testing.T) {
	hs, ss := sampleRefs(8)
	s := NewRefScanner(hs)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			stream := []byte(strings.Repeat("x", i) + ss[i] + "-")
			for range 100 {
				if got := scanChunks(s, stream, i+1); len(got) != 1 || got[0] != hs[i] {
					t.Errorf("goroutine %d: found %v, want %v", i, got, hs[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkRefMatcher(b *testing.B) {
	hs, _ := sampleRefs(200)
	s := NewRefScanner(hs)
	r := rand.New(rand.NewPCG(5, 6))
	random := make([]byte, 1<<20)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	alphabet := make([]byte, 1<<20)
	for i := range alphabet {
		alphabet[i] = hashAlphabet[r.IntN(len(hashAlphabet))]
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
