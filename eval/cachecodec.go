package eval

import (
	"encoding/binary"
	"errors"
	"slices"

	"hephc.dev/hephc/store"
)

// The cache entry is a flat binary record: gob spends most of its time on
// the 32-byte hashes, element by element. Integers are uvarints, strings
// and byte slices a uvarint length and the bytes, hashes 32 raw bytes,
// maps sorted by key.

type encoder struct{ b []byte }

func (e *encoder) uint(n uint64)   { e.b = binary.AppendUvarint(e.b, n) }
func (e *encoder) str(s string)    { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bytes(b []byte)  { e.uint(uint64(len(b))); e.b = append(e.b, b...) }
func (e *encoder) hash(h [32]byte) { e.b = append(e.b, h[:]...) }
func (e *encoder) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}
func (e *encoder) strMap(m map[string]string) {
	e.uint(uint64(len(m)))
	var buf [8]string
	for _, k := range appendSortedKeys(buf[:0], m) {
		e.str(k)
		e.str(m[k])
	}
}
func (e *encoder) hashMap(m map[string]store.DrvHash) {
	e.uint(uint64(len(m)))
	var buf [8]string
	for _, k := range appendSortedKeys(buf[:0], m) {
		e.str(k)
		e.hash(m[k])
	}
}

var errShort = errors.New("cache entry: truncated")

type decoder struct {
	b   []byte
	err error
	// interned keeps one copy of strings that repeat (file names, input
	// names, systems).
	interned map[string]string
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[k:]
	return n
}

func (d *decoder) raw() []byte {
	n := d.uint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errShort
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) str() string { return string(d.raw()) }

// istr reads a string likely to repeat.
func (d *decoder) istr() string {
	b := d.raw()
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	d.interned[s] = s
	return s
}

func (d *decoder) hash() (h [32]byte) {
	if d.err != nil || len(d.b) < 32 {
		d.err = errShort
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[32:]
	return h
}

// count reads a length, refusing one larger than the bytes left could hold.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.err = errShort
		return 0
	}
	return int(n)
}

func (d *decoder) strs() []string {
	n := d.count()
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (d *decoder) strMap() map[string]string {
	n := d.count()
	m := make(map[string]string, n)
	for range n {
		k := d.istr()
		m[k] = d.str()
	}
	return m
}

func (d *decoder) hashMap() map[string]store.DrvHash {
	n := d.count()
	m := make(map[string]store.DrvHash, n)
	for range n {
		k := d.istr()
		m[k] = d.hash()
	}
	return m
}

// appendSortedKeys appends m's keys to keys, sorted (a small map's to a
// buffer on the stack: no allocation).
func appendSortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (e *encoder) entry(c *cacheEntry) {
	e.str(c.Format)
	for _, deps := range [][]fileDep{c.Files, c.Dirs} {
		e.uint(uint64(len(deps)))
		for _, f := range deps {
			e.str(f.Path)
			e.hash(f.Hash)
		}
	}
	e.hashMap(c.Roots)
	e.uint(uint64(len(c.Nodes)))
	for i := range c.Nodes {
		n := &c.Nodes[i]
		e.hash(n.Hash)
		e.str(n.Name)
		e.str(n.Version)
		e.str(n.System)
		e.str(n.Builder)
		e.strs(n.Args)
		e.strMap(n.Env)
		e.hashMap(n.Inputs)
		e.bytes(n.Attrs)
		e.str(n.OutputHash)
		e.str(n.Meta.Description)
		e.str(n.Meta.License)
		e.str(n.Meta.Homepage)
		e.str(n.Meta.Channel)
		e.strs(n.Meta.Provides)
		e.bytes(n.Meta.Tests)
		for _, v := range []int64{n.Limits.Memory, n.Limits.Pids, n.Limits.Tmp, n.Limits.Disk, int64(n.Limits.Timeout)} {
			e.uint(uint64(v))
		}
		e.str(n.Attr)
		e.str(n.Pos.File)
		e.uint(uint64(n.Pos.Line))
		e.uint(uint64(n.Pos.Col))
	}
	e.bytes(c.Deferred)
}

// entryDeps reads an entry's format and what it depends on, which come
// first: an entry whose files changed is not decoded further.
func (d *decoder) entryDeps() *cacheEntry {
	c := &cacheEntry{Format: d.str()}
	if c.Format != cacheFormat {
		d.err = errors.New("cache entry: other format")
		return nil
	}
	for _, deps := range []*[]fileDep{&c.Files, &c.Dirs} {
		n := d.count()
		for range n {
			*deps = append(*deps, fileDep{Path: d.str(), Hash: d.hash()})
		}
	}
	return c
}

// entryGraph reads the rest of the entry entryDeps began.
func (d *decoder) entryGraph(c *cacheEntry) {
	c.Roots = d.hashMap()
	n := d.count()
	c.Nodes = make([]cacheNode, n)
	for i := range c.Nodes {
		x := &c.Nodes[i]
		x.Hash = d.hash()
		x.Name = d.str()
		x.Version = d.str()
		x.System = d.istr()
		x.Builder = d.istr()
		x.Args = d.strs()
		x.Env = d.strMap()
		x.Inputs = d.hashMap()
		x.Attrs = d.raw()
		x.OutputHash = d.str()
		x.Meta.Description = d.str()
		x.Meta.License = d.istr()
		x.Meta.Homepage = d.str()
		x.Meta.Channel = d.istr()
		x.Meta.Provides = d.strs()
		if b := d.raw(); len(b) > 0 {
			x.Meta.Tests = append([]byte(nil), b...)
		}
		for _, v := range []*int64{&x.Limits.Memory, &x.Limits.Pids, &x.Limits.Tmp, &x.Limits.Disk, (*int64)(&x.Limits.Timeout)} {
			*v = int64(d.uint())
		}
		x.Attr = d.str()
		x.Pos.File = d.istr()
		x.Pos.Line = int(d.uint())
		x.Pos.Col = int(d.uint())
	}
	if b := d.raw(); len(b) > 0 {
		c.Deferred = append([]byte(nil), b...)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("cache entry: trailing bytes")
	}
}
