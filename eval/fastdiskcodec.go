package eval

import (
	"bytes"
	"errors"
	"unsafe"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/store"
)

// An entry is the format string, the BLAKE3 hash of the rest, then the
// build, the file's name and content hash, whether the fast path handles
// it, its package and its declarations.

func encodeFileEntry(build string, ff *fastFile) []byte {
	head := len(fileCacheFormat) + 32
	e := encoder{b: make([]byte, head, head+64+512*len(ff.decls))}
	e.str(build)
	e.str(ff.name)
	e.hash(ff.sum)
	e.bool(ff.ok)
	e.str(ff.pkg)
	e.uint(uint64(len(ff.decls)))
	for _, d := range ff.decls {
		e.decl(d)
	}
	sum := blake3.Sum256(e.b[head:])
	copy(e.b, fileCacheFormat)
	copy(e.b[len(fileCacheFormat):], sum[:])
	return e.b
}

func (e *encoder) bool(v bool) {
	if v {
		e.uint(1)
	} else {
		e.uint(0)
	}
}

// strsOrNil encodes a list that may be nil (Meta.Provides: nil and empty
// are not the same to reflect.DeepEqual, nor to the graph's JSON).
func (e *encoder) strsOrNil(ss []string) {
	e.bool(ss != nil)
	if ss != nil {
		e.strs(ss)
	}
}

// strings are a declaration's string fields, in the entry's order.
func (d *fastDecl) strings() [9]*string {
	return [...]*string{&d.drv.Name, &d.drv.Version, &d.drv.System, &d.drv.Builder, &d.drv.OutputHash,
		&d.meta.Description, &d.meta.License, &d.meta.Homepage, &d.meta.Channel}
}

func (e *encoder) decl(d *fastDecl) {
	e.strs(d.path)
	e.uint(uint64(d.pos.Line))
	e.uint(uint64(d.pos.Col))
	for _, s := range d.strings() {
		e.str(*s)
	}
	e.strs(d.drv.Args)
	e.strMap(d.drv.Env)
	e.strsOrNil(d.meta.Provides)
	e.uint(uint64(len(d.inputs)))
	for _, in := range d.inputs {
		e.str(in.label)
		e.uint(uint64(in.kind))
		e.uint(uint64(len(in.refs)))
		for _, r := range in.refs {
			e.strs(r)
		}
		if in.kind == 's' {
			e.strs(in.keys)
		}
	}
	e.bool(d.linked)
	if d.linked {
		e.uint(uint64(len(d.lastIns)))
		for _, h := range d.lastIns {
			e.hash(h)
		}
		e.hash(d.lastHash)
	}
}

var errEntry = errors.New("file cache entry: not one for this file")

// decodeFileEntry reads an entry, which must be fl's (its name and
// content) for build; ok=false for anything else. Its strings share the
// entry's bytes, and its declarations, their slices and hashes are cut
// from a few large allocations: a new process reads thousands.
func decodeFileEntry(b []byte, build string, fl File) (*fastFile, bool) {
	if !bytes.HasPrefix(b, []byte(fileCacheFormat)) || len(b) < len(fileCacheFormat)+32 {
		return nil, false
	}
	b = b[len(fileCacheFormat):]
	if blake3.Sum256(b[32:]) != [32]byte(b[:32]) {
		return nil, false
	}
	d := &entryDecoder{decoder: decoder{b: b[32:]}}
	if d.str() != build || d.str() != fl.Name || d.hash() != fl.Sum {
		return nil, false
	}
	ff := &fastFile{name: fl.Name, sum: fl.Sum, ok: d.bool(), pkg: d.str()}
	n := d.countOf(16)
	decls := make([]fastDecl, n)
	ff.decls = make([]*fastDecl, n)
	for i := range decls {
		d.decl(ff, &decls[i])
		if d.err != nil {
			return nil, false
		}
		ff.decls[i] = &decls[i]
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, false
	}
	return ff, true
}

// entryDecoder reads an entry's declarations.
type entryDecoder struct {
	decoder
	// Arenas the declarations' slices are cut from.
	strs   []string
	refs   [][]string
	inputs []fastInput
	hashes []store.DrvHash
}

func (d *decoder) bool() bool {
	switch d.uint() {
	case 0:
		return false
	case 1:
		return true
	}
	d.err = errEntry
	return false
}

// countOf reads a length of elements each encoded in at least size
// bytes, refusing one that the bytes left could not hold: a hostile length
// makes no large allocation.
func (d *decoder) countOf(size int) int {
	n := d.uint()
	if n > uint64(len(d.b)/size) {
		d.err = errEntry
		return 0
	}
	return int(n)
}

// ustr reads a string that shares the entry's bytes (never written to).
func (d *entryDecoder) ustr() string {
	b := d.raw()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// cut returns n elements of *arena (never nil), growing it by chunks,
// each twice the one before, from 16 elements to 1,024.
func cut[T any](arena *[]T, n int) []T {
	if cap(*arena)-len(*arena) < n || *arena == nil {
		*arena = make([]T, 0, max(n, min(2*cap(*arena), 1024), 16))
	}
	a := *arena
	*arena = a[:len(a)+n]
	return a[len(a) : len(a)+n : len(a)+n]
}

// ustrs reads a list of strings (never nil).
func (d *entryDecoder) ustrs() []string {
	ss := cut(&d.strs, d.countOf(1))
	for i := range ss {
		ss[i] = d.ustr()
	}
	return ss
}

func (d *entryDecoder) decl(ff *fastFile, x *fastDecl) {
	x.ff, x.path = ff, d.ustrs()
	x.pos.File = ff.name
	x.pos.Line = int(d.uint())
	x.pos.Col = int(d.uint())
	for _, s := range x.strings() {
		*s = d.ustr()
	}
	x.drv.Args = d.ustrs()
	n := d.countOf(2)
	x.drv.Env = make(map[string]string, n)
	for range n {
		k := d.ustr()
		x.drv.Env[k] = d.ustr()
	}
	x.drv.Attrs = map[string]any{}
	if d.bool() {
		x.meta.Provides = d.ustrs()
	}
	refs := 0
	x.inputs = cut(&d.inputs, d.countOf(3))
	for i := range x.inputs {
		in := &x.inputs[i]
		in.label = d.ustr()
		in.kind = byte(d.uint())
		in.refs = cut(&d.refs, d.countOf(2))
		for k := range in.refs {
			if in.refs[k] = d.ustrs(); len(in.refs[k]) == 0 {
				d.err = errEntry
			}
		}
		switch in.kind {
		case 'r':
			if len(in.refs) != 1 {
				d.err = errEntry
			}
		case 's':
			if in.keys = d.ustrs(); len(in.keys) != len(in.refs) {
				d.err = errEntry
			}
		case 'l':
		default:
			d.err = errEntry
		}
		refs += len(in.refs)
	}
	if len(x.path) == 0 {
		d.err = errEntry
	}
	if x.linked = d.bool(); x.linked {
		if d.countOf(32) != refs {
			d.err = errEntry
			return
		}
		x.lastIns = cut(&d.hashes, refs)
		for i := range x.lastIns {
			x.lastIns[i] = d.hash()
		}
		x.lastHash = d.hash()
	}
}
