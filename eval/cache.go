package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zeebo/blake3"

	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// Cache keeps evaluated graphs keyed by the content of everything the
// evaluation read, so that an unchanged configuration is not evaluated
// again. An entry is found by a key over the request (hephc's build, the
// arguments, the attribute) and is valid while every file it depended on
// has the same content and every package directory the same .cue files.
// Entries are written atomically; concurrent use by several processes is
// safe, and a damaged entry is a miss.
type Cache struct {
	Dir string
}

// cacheFormat changes whenever the entry format or the meaning of a graph
// changes.
const cacheFormat = "hephc-eval-cache-5"

// Request is what an evaluation was asked to do.
type Request struct {
	// Build identifies the hephc that evaluates (its executable and schema).
	Build string
	// Args are the configuration arguments, made absolute.
	Args []string
	Attr string
	// Policy says that the graph passed a policy check: the check was
	// made against the configuration's own policy and PolicyFiles (made
	// absolute). A graph that fails its check is never cached.
	Policy      bool
	PolicyFiles []string
}

func (r Request) key() string {
	h := blake3.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%t\x00", cacheFormat, r.Build, r.Attr, r.Policy)
	for _, a := range r.Args {
		fmt.Fprintf(h, "%s\x00", a)
	}
	fmt.Fprintf(h, "policy files\x00")
	for _, a := range r.PolicyFiles {
		fmt.Fprintf(h, "%s\x00", a)
	}
	var sum [32]byte
	return fmt.Sprintf("%x", h.Sum(sum[:0]))
}

type cacheEntry struct {
	Files    []fileDep
	Dirs     []fileDep
	Roots    map[string]store.DrvHash
	Nodes    []cacheNode
	Deferred []byte
	Format   string
}

type fileDep struct {
	Path string
	Hash [32]byte
}

type cacheNode struct {
	Hash       store.DrvHash
	Name       string
	Version    string
	System     string
	Builder    string
	Args       []string
	Env        map[string]string
	Inputs     map[string]store.DrvHash
	Attrs      []byte // canonical JSON
	OutputHash string
	Meta       Meta
	Limits     store.Limits
	Attr       string
	Pos        srcpos.Pos
}

func (c *Cache) path(r Request) string {
	k := r.key()
	return filepath.Join(c.Dir, k[:2], k)
}

// Get returns the cached graph for r when every file and directory it
// depended on is unchanged.
func (c *Cache) Get(r Request) (*Graph, bool) {
	b, err := os.ReadFile(c.path(r))
	if err != nil {
		return nil, false
	}
	dec := &decoder{b: b, interned: make(map[string]string)}
	e := dec.entryDeps()
	if dec.err != nil {
		return nil, false
	}
	for _, f := range e.Files {
		if h, err := hashFile(f.Path); err != nil || h != f.Hash {
			return nil, false
		}
	}
	for _, d := range e.Dirs {
		if h, err := hashDir(d.Path); err != nil || h != d.Hash {
			return nil, false
		}
	}
	if dec.entryGraph(e); dec.err != nil {
		return nil, false
	}
	g := &Graph{Roots: e.Roots, Nodes: make(map[store.DrvHash]*Node, len(e.Nodes)), Deferred: e.Deferred}
	for _, n := range e.Nodes {
		d := &store.Derivation{
			Name: n.Name, Version: n.Version, System: n.System, Builder: n.Builder,
			Args: n.Args, Env: n.Env, Inputs: n.Inputs, OutputHash: n.OutputHash,
		}
		if d.Env == nil {
			d.Env = map[string]string{}
		}
		if d.Inputs == nil {
			d.Inputs = map[string]store.DrvHash{}
		}
		if d.Args == nil {
			d.Args = []string{}
		}
		if string(n.Attrs) == "{}" {
			d.Attrs = map[string]any{}
		} else if err := decodeAttrs(n.Attrs, &d.Attrs); err != nil {
			return nil, false
		}
		g.Nodes[n.Hash] = &Node{Hash: n.Hash, Drv: d, Meta: n.Meta, Limits: n.Limits, Attr: n.Attr, Pos: n.Pos}
	}
	return g, true
}

// Put stores g for r, depending on files and dirs (as lang.Config lists
// them). Errors are returned for the caller to ignore or report: a cache
// that cannot be written only costs time.
func (c *Cache) Put(r Request, files, dirs []string, g *Graph) error {
	e := cacheEntry{Format: cacheFormat, Roots: g.Roots, Deferred: g.Deferred}
	for _, f := range files {
		h, err := hashFile(f)
		if err != nil {
			return fmt.Errorf("caching evaluation: %w", err)
		}
		e.Files = append(e.Files, fileDep{f, h})
	}
	for _, d := range dirs {
		h, err := hashDir(d)
		if err != nil {
			return fmt.Errorf("caching evaluation: %w", err)
		}
		e.Dirs = append(e.Dirs, fileDep{d, h})
	}
	e.Nodes = make([]cacheNode, 0, len(g.Nodes))
	for _, n := range g.SortedNodes() {
		attrs, err := store.AppendCanonicalJSON(nil, n.Drv.Attrs)
		if err != nil {
			return fmt.Errorf("caching evaluation: %w", err)
		}
		d := n.Drv
		e.Nodes = append(e.Nodes, cacheNode{
			Hash: n.Hash, Name: d.Name, Version: d.Version, System: d.System,
			Builder: d.Builder, Args: d.Args, Env: d.Env, Inputs: d.Inputs,
			Attrs: attrs, OutputHash: d.OutputHash, Meta: n.Meta, Limits: n.Limits, Attr: n.Attr, Pos: n.Pos,
		})
	}
	enc := encoder{b: make([]byte, 0, 4096+320*len(e.Nodes))}
	enc.entry(&e)
	p := c.path(r)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("caching evaluation: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("caching evaluation: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(enc.b); err != nil {
		tmp.Close()
		return fmt.Errorf("caching evaluation: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("caching evaluation: %w", err)
	}
	return os.Rename(tmp.Name(), p)
}

func decodeAttrs(b []byte, into *map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return err
	}
	if m == nil {
		m = map[string]any{}
	}
	fixNumbers(m)
	*into = m
	return nil
}

// fixNumbers turns json.Number (always an integer in canonical JSON) back
// into int64, as evaluation produces.
func fixNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
	case []any:
		for i, e := range x {
			x[i] = fixNumbers(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = fixNumbers(e)
		}
	}
	return v
}

func hashFile(path string) ([32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, err
	}
	return blake3.Sum256(b), nil
}

// hashDir hashes the sorted names of the .cue files in dir.
func hashDir(dir string) ([32]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return [32]byte{}, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".cue") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return blake3.Sum256([]byte(strings.Join(names, "\x00"))), nil
}

// ChangedSince reports whether any of the files or directories was
// modified at t or later (or can no longer be read). An evaluation that
// began at t and read a file changed since may have seen a mixture of
// contents: it is not cached, because the entry would record the new
// content's hash against a graph made from the old.
//
// A modification time later than now is a clock out of step (or an
// unpacked archive), not an edit in progress: it does not count, or such
// a file would never be cached.
func ChangedSince(t time.Time, paths ...[]string) bool {
	// File systems keep modification times coarsely: a second of margin.
	t = t.Add(-time.Second)
	now := time.Now()
	for _, ps := range paths {
		for _, p := range ps {
			fi, err := os.Stat(p)
			if err != nil {
				return true
			}
			if m := fi.ModTime(); !m.Before(t) && !m.After(now) {
				return true
			}
		}
	}
	return false
}
