package eval

import (
	"fmt"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/errors"

	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/store"
)

// Options select what Build evaluates.
type Options struct {
	// Attr is the CUE path to start from, e.g. images.workstation; empty
	// means the whole configuration.
	Attr string
}

// Build walks root into a derivation graph. Every derivation found by
// walking the selected value's fields is a root; inputs are followed by
// reference. All problems are returned together as a cue/errors list.
func Build(root cue.Value, opts Options) (*Graph, error) {
	w := &walker{
		root:  root,
		g:     &Graph{Nodes: make(map[store.DrvHash]*Node), Roots: make(map[string]store.DrvHash)},
		memo:  make(map[string]*visit),
		index: make(map[string]cue.Value),
		alias: make(map[string]string),
	}
	start := root
	if opts.Attr != "" {
		p := cue.ParsePath(opts.Attr)
		if err := p.Err(); err != nil {
			return nil, fmt.Errorf("attribute %q: %w", opts.Attr, err)
		}
		if sels := p.Selectors(); len(sels) > 0 && sels[0].String() == PolicyField {
			return nil, &Error{Text: fmt.Sprintf("attribute %s: the configuration's %s is not part of the graph: nothing in it is built", opts.Attr, PolicyField)}
		}
		start = root.LookupPath(p)
		if !start.Exists() {
			if err := root.Err(); err != nil && !hasFields(root) {
				// The whole configuration is an error (a reference to
				// nothing): that is the cause, not a missing attribute.
				w.failIn(root, "", err)
				return nil, w.errs
			}
			return nil, &Error{Text: missingAttr(root, p)}
		}
	}
	w.collect(start, opts.Attr)
	w.process()
	w.dropAliasRoots()
	if w.errs != nil {
		return nil, w.errs
	}
	if len(w.g.Roots) == 0 && opts.Attr != "" {
		return nil, errorf(start, opts.Attr, "no derivation here")
	}
	return w.g, nil
}

type visitState int

const (
	visiting visitState = iota + 1
	done
	failed
)

type visit struct {
	state visitState
	hash  store.DrvHash
}

// frame is a derivation being visited; edge is the input it is following.
type frame struct {
	attr     string
	name     string
	edge     cue.Value // the input value being followed
	edgeAttr string
}

type walker struct {
	root  cue.Value
	g     *Graph
	memo  map[string]*visit // by the CUE path a derivation is defined at
	stack []*frame
	errs  errors.Error
	alias map[string]string // root attr -> the attr it refers to

	index   map[string]cue.Value // collected values by path
	entries []entry
}

func (w *walker) fail(err errors.Error) { w.errs = errors.Append(w.errs, err) }

// failIn records the errors of a field of the derivation v (at attr). An
// error whose every position is in the schema (a required field the user
// did not write) also gets the position of the derivation itself.
func (w *walker) failIn(v cue.Value, attr string, err error) {
	for _, e := range errors.Errors(err) {
		user := false
		for _, p := range append(e.InputPositions(), e.Position()) {
			if p.IsValid() && !defs.IsSchemaFile(p.Filename()) {
				user = true
			}
		}
		if !user {
			format, args := e.Msg()
			e = &Error{Pos: userPos(v), Related: e.InputPositions(), Attr: attr, Text: fmt.Sprintf(format, args...)}
		}
		w.fail(e)
	}
}

// entry is a value found by walking the selected configuration: a
// derivation, a reference, or a scalar to check.
type entry struct {
	attr string
	v    cue.Value
}

// collect walks a value that is not known to be a derivation, indexing
// every field by its path (CUE looks fields up by a linear scan; a graph of
// 10,000 packages would pay that on every reference) and recording the
// entries to process: derivations, references and scalars.
func (w *walker) collect(v cue.Value, attr string) {
	w.index[attr] = v
	if _, ok := refPath(v); ok || isDerivation(v) {
		w.entries = append(w.entries, entry{attr, v})
		return
	}
	kind := v.IncompleteKind()
	if v.Err() != nil && w.collectFields(v, attr) {
		// CUE marks a struct as an error when anything in it is wrong (a
		// bad field, a dependency cycle); its fields are walked all the
		// same, so that every error is reported, not the first.
		return
	}
	switch kind {
	case cue.StructKind:
		w.collectFields(v, attr)
	case cue.ListKind:
		it, err := v.List()
		if err != nil {
			w.fail(cueErr(err))
			return
		}
		for i := 0; it.Next(); i++ {
			w.collect(it.Value(), attr+"["+strconv.Itoa(i)+"]")
		}
	default:
		w.entries = append(w.entries, entry{attr, v})
	}
}

// collectFields collects v's regular fields and reports whether it has any.
func (w *walker) collectFields(v cue.Value, attr string) bool {
	it, err := fields(v)
	if err != nil {
		return false
	}
	found := false
	for it.Next() {
		if attr == "" && it.Selector().String() == PolicyField {
			continue // the configuration's policy, not part of the graph
		}
		if regular(it.Selector()) {
			found = true
			w.collect(it.Value(), join(attr, it.Selector()))
		}
	}
	return found
}

// process visits the collected entries: a derivation (or a reference to
// one) is a root; a reference to a container outside the walk is walked;
// a scalar must be concrete.
func (w *walker) process() {
	for i := 0; i < len(w.entries); i++ {
		e := w.entries[i]
		v, target := w.resolve(e.v, e.attr)
		switch {
		case isDerivation(v):
			h, ok := w.derivation(v, target)
			if !ok {
				continue
			}
			w.g.Roots[e.attr] = h
			if target != e.attr {
				w.alias[e.attr] = target
			}
		case target != e.attr:
			if _, walked := w.index[target]; !walked {
				w.collect(v, target)
			}
		case v.IncompleteKind() == cue.TopKind:
			w.fail(errorf(v, e.attr, "no value: %s", selfRefHint))
		default:
			if err := v.Validate(cue.Concrete(true)); err != nil {
				w.failIn(v, e.attr, err)
			}
		}
	}
}

// dropAliasRoots removes roots that only refer to another root.
func (w *walker) dropAliasRoots() {
	for a, target := range w.alias {
		if _, ok := w.g.Roots[target]; ok {
			delete(w.g.Roots, a)
		}
	}
}

// selfRefHint explains the most common way to get _ where a value was
// meant: in CUE a reference resolves to the nearest enclosing field of
// that name, so `go: go` or `packages: {age: packages.age}` refer to
// themselves. (A let is no cure: hephc cannot follow a reference to a let.)
const selfRefHint = "it is _: does it refer to itself? In `inputs: {go: go}` the second go is the input itself; give the outer field an alias (`Go=go: …`, then `go: Go`) or another name"

// resolve follows v while it is a reference (possibly unified with the
// schema's open constraint `_`), returning the referred value and its path.
func (w *walker) resolve(v cue.Value, attr string) (cue.Value, string) {
	for range 64 {
		p, ok := refPath(v)
		if !ok {
			break
		}
		nv, ok := w.index[p.String()]
		if !ok {
			nv = w.root.LookupPath(p)
		}
		if !nv.Exists() {
			break
		}
		v, attr = nv, p.String()
	}
	return v, attr
}

// refPath returns the path v refers to when v is a reference into the
// configuration. Only a value with a single conjunct is seen as a
// reference: that is why the schema leaves inputs open (see #Derivation).
func refPath(v cue.Value) (cue.Path, bool) {
	return ownRef(v)
}

// ownRef returns the path of a reference to a regular field of the
// configuration (not into the schema's definitions).
func ownRef(v cue.Value) (cue.Path, bool) {
	_, p := v.ReferencePath()
	sels := p.Selectors()
	if len(sels) == 0 {
		return cue.Path{}, false
	}
	for _, s := range sels {
		if s.IsDefinition() {
			return cue.Path{}, false
		}
	}
	return p, true
}

func isDerivation(v cue.Value) bool {
	return v.LookupPath(builderPath).Exists()
}

// fields iterates the fields of a struct even when CUE marks the struct as
// an error (as it does for all of a dependency cycle): asking for
// definitions skips CUE's kind check. Callers skip what regular rejects.
func fields(v cue.Value) (*cue.Iterator, error) {
	return v.Fields(cue.Definitions(true))
}

// hasFields reports whether v, possibly an error, has regular fields.
func hasFields(v cue.Value) bool {
	it, err := fields(v)
	if err != nil {
		return false
	}
	for it.Next() {
		if regular(it.Selector()) {
			return true
		}
	}
	return false
}

// holdsDerivations reports whether v, possibly an error, has a member (a
// regular field or an element) that is a derivation, or, depth levels
// down, an error that holds one.
func holdsDerivations(v cue.Value, depth int) bool {
	it, err := fields(v)
	if err != nil || depth == 0 {
		return false
	}
	for it.Next() {
		s, m := it.Selector(), it.Value()
		if s.LabelType() != cue.IndexLabel && !regular(s) {
			continue
		}
		if isDerivation(m) || m.Err() != nil && holdsDerivations(m, depth-1) {
			return true
		}
	}
	return false
}

func regular(s cue.Selector) bool {
	return !s.IsDefinition() && s.Type()&cue.HiddenLabel == 0
}

var (
	builderPath = cue.MakePath(cue.Str("builder"))
	inputsPath  = cue.MakePath(cue.Str("inputs"))
)

func join(attr string, sel cue.Selector) string {
	if attr == "" {
		return sel.String()
	}
	return attr + "." + sel.String()
}

// missingAttr says which part of p is missing and what is there instead.
func missingAttr(root cue.Value, p cue.Path) string {
	sels := p.Selectors()
	parent, at := root, "the configuration"
	for i, s := range sels {
		next := parent.LookupPath(cue.MakePath(s))
		if !next.Exists() {
			have := fieldNames(parent)
			if len(have) == 0 {
				return fmt.Sprintf("attribute %s not found: %s has no fields", p, at)
			}
			return fmt.Sprintf("attribute %s not found: %s has %s", p, at, strings.Join(have, ", "))
		}
		parent, at = next, cue.MakePath(sels[:i+1]...).String()
	}
	return fmt.Sprintf("attribute %s not found", p)
}

func fieldNames(v cue.Value) []string {
	var names []string
	it, err := v.Fields()
	if err != nil {
		return nil
	}
	for it.Next() {
		names = append(names, it.Selector().String())
	}
	return names
}

// cueErr makes any error a cue/errors.Error, keeping CUE's own.
func cueErr(err error) errors.Error {
	if e, ok := err.(errors.Error); ok {
		return e
	}
	return errors.Promote(err, "")
}
