package eval

import (
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/literal"
	"cuelang.org/go/cue/parser"
	"cuelang.org/go/cue/token"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/store"
)

// The fast path: a configuration whose every declaration is a plain
// derivation literal (heph.#Derivation & {…} of string literals, inputs
// that are references to other such declarations, or lists or structs of
// them) is evaluated from its syntax alone, without CUE's evaluator, which
// is quadratic in the number of top-level packages (docs/design.md,
// "Measured traps"). Each file is parsed (in parallel) and its
// declarations decoded once per content; inputs are resolved through the
// merged tree of fields and each derivation hashed after its inputs; a
// declaration whose inputs hash as before keeps its hash.
//
// The fast path proves, declaration by declaration, that it handles the
// configuration exactly as Build does after CUE: it accepts only the
// shapes fastDerivation lists, references only where CUE's scoping makes
// them the package's top-level fields, and checks every constraint the
// schema (#Derivation, #Meta, #Name, #Ident, #SPDX, #OutputHash) puts on
// them. Anything else — the schema's helpers (#GoProgram, …),
// interpolation, attrs, limits, a field defined twice, a policy field —
// and any configuration with an error at all is refused (ok=false): the
// caller then evaluates it with CUE, which gives the diagnostics. So a
// graph from the fast path has no error to report, and every diagnostic
// is CUE's, with its positions and wording. TestFastDifferential (the
// golden cases, the CLI's scripts, system.cue, the benchmark's shape) and
// FuzzFastDifferential (generated configurations) evaluate both ways and
// require identical graphs.
//
// Its nodes have no CUE values (Node.Value), as a graph from the
// evaluation cache has none: pipeline takes the fast path only when no
// policy is to be enforced (policy reads the values).

// File is one file of a configuration, for Fast.
type File struct {
	// Name is the file's absolute path, as CUE's loader names it.
	Name string
	// Sum identifies the file's content; Fast keeps what it extracted
	// from a file by name and Sum, and parses only a file it has not.
	Sum [32]byte
	Src []byte
}

// Fast evaluates configurations on the fast path, keeping what it
// extracted from each file by content: after an edit, only the edited
// files are read again; resolving inputs and hashing is done for the whole
// graph. Its zero value is ready to use; it is safe for concurrent use.
type Fast struct {
	link  sync.Mutex // held by link, which reuses what declarations made before
	mu    sync.Mutex
	files map[string]*fastFile // by file name
}

// fastFile is what one file declares, when the fast path handles it.
type fastFile struct {
	sum   [32]byte
	ok    bool
	pkg   string
	decls []*fastDecl
}

// fastDecl is one derivation literal: where it is (labels from the top),
// its derivation without inputs, its meta and its inputs' references.
type fastDecl struct {
	path   []string
	pos    token.Pos
	drv    store.Derivation
	meta   Meta
	inputs []fastInput
	// last is the derivation this declaration made the last time it was
	// linked, with its inputs' hashes in the order they were visited:
	// the same inputs make the same derivation, not hashed again.
	last     *store.Derivation
	lastIns  []store.DrvHash
	lastHash store.DrvHash
}

// fastInput is one field of inputs: a reference, a list of references or
// a struct of references.
type fastInput struct {
	label string
	kind  byte // 'r' reference, 'l' list, 's' struct
	refs  [][]string
	keys  []string // of a struct input, in order
}

// Build evaluates files (one package, every file of it) as Build would
// evaluate the CUE value they make, when it can prove it does so exactly;
// ok=false means the caller must evaluate them with CUE.
func (f *Fast) Build(files []File, opts Options) (g *Graph, ok bool) {
	var at []string // the attribute's labels
	if opts.Attr != "" {
		at = strings.Split(opts.Attr, ".")
		for _, l := range at {
			if !identRE.MatchString(l) || reserved[l] {
				return nil, false
			}
		}
	}
	if len(files) == 0 {
		return nil, false
	}
	ffs := f.extract(files)
	pkg := ""
	for i, ff := range ffs {
		if !ff.ok || i > 0 && ff.pkg != pkg {
			return nil, false
		}
		pkg = ff.pkg
	}
	f.link.Lock()
	defer f.link.Unlock()
	return link(ffs, at)
}

// extract returns what each file declares, from the cache when the file
// is unchanged, extracting the others in parallel.
func (f *Fast) extract(files []File) []*fastFile {
	out := make([]*fastFile, len(files))
	var todo []int
	f.mu.Lock()
	for i, fl := range files {
		if ff := f.files[fl.Name]; ff != nil && ff.sum == fl.Sum {
			out[i] = ff
		} else {
			todo = append(todo, i)
		}
	}
	f.mu.Unlock()
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(len(todo), runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i] = extractFile(files[i])
			}
		}()
	}
	for _, i := range todo {
		work <- i
	}
	close(work)
	wg.Wait()
	f.mu.Lock()
	if f.files == nil {
		f.files = make(map[string]*fastFile)
	}
	for _, i := range todo {
		f.files[files[i].Name] = out[i]
	}
	f.mu.Unlock()
	return out
}

// extractFile parses one file and reads its declarations; ok=false when any of them is
// not a shape the fast path handles.
func extractFile(fl File) *fastFile {
	ff := &fastFile{sum: fl.Sum}
	if defs.IsSchemaFile(fl.Name) {
		return ff
	}
	x, err := parser.ParseFile(fl.Name, fl.Src)
	if err != nil {
		return ff // CUE says what is wrong
	}
	imported, used := false, false
	for _, d := range x.Decls {
		switch d := d.(type) {
		case *ast.Package:
			if ff.pkg != "" || d.Name == nil {
				return ff
			}
			ff.pkg = d.Name.Name
		case *ast.ImportDecl:
			for _, s := range d.Specs {
				if imported || s.Name != nil || s.Path == nil || s.Path.Value != strconv.Quote(defs.ImportPath) {
					return ff
				}
				imported = true
			}
		case *ast.CommentGroup:
		case *ast.Field:
			if !fastContainer(d, nil, nil, ff, &used) {
				return ff
			}
		default:
			return ff
		}
	}
	// A package clause is required for an import; an unused import is an
	// error in CUE.
	ff.ok = ff.pkg != "" && imported == used
	return ff
}

// reserved are identifiers the fast path does not take as labels.
var reserved = map[string]bool{"true": true, "false": true, "null": true, "if": true, "for": true, "in": true, "let": true, "import": true, "package": true, "func": true, "heph": true}

// plainLabel returns a field's label when it is a plain regular identifier
// whose selector CUE prints as it is.
func plainLabel(fd *ast.Field) (string, bool) {
	id, ok := fd.Label.(*ast.Ident)
	if !ok || fd.Alias != nil || fd.Constraint != token.ILLEGAL || len(fd.Attrs) > 0 {
		return "", false
	}
	if !identRE.MatchString(id.Name) || reserved[id.Name] {
		return "", false
	}
	return id.Name, true
}

// plainFields returns the fields of a struct literal and their labels
// when every element is a field with a plain label, each label once.
func plainFields(e ast.Expr) ([]*ast.Field, []string, bool) {
	s, ok := e.(*ast.StructLit)
	if !ok {
		return nil, nil, false
	}
	fs := make([]*ast.Field, 0, len(s.Elts))
	ls := make([]string, 0, len(s.Elts))
	var seen map[string]bool // for a long struct
	if len(s.Elts) > 16 {
		seen = make(map[string]bool, len(s.Elts))
	}
	for _, el := range s.Elts {
		switch el := el.(type) {
		case *ast.CommentGroup:
		case *ast.Field:
			l, ok := plainLabel(el)
			if !ok || seen != nil && seen[l] || seen == nil && slices.Contains(ls, l) {
				return nil, nil, false
			}
			if seen != nil {
				seen[l] = true
			}
			fs, ls = append(fs, el), append(ls, l)
		default:
			return nil, nil, false
		}
	}
	return fs, ls, true
}

// scope is the labels of the literal structs around an expression, below
// the package's top level, innermost first: a reference whose first
// identifier is one of them is not to the top level.
type scope struct {
	labels []string
	set    map[string]bool // of a long struct's labels
	up     *scope
}

// within returns the scope of a struct literal with labels inside s.
func within(s *scope, labels []string) *scope {
	in := &scope{labels: labels, up: s}
	if len(labels) > 16 {
		in.set = make(map[string]bool, len(labels))
		for _, l := range labels {
			in.set[l] = true
		}
	}
	return in
}

func (s *scope) has(name string) bool {
	for ; s != nil; s = s.up {
		if s.set != nil && s.set[name] || s.set == nil && slices.Contains(s.labels, name) {
			return true
		}
	}
	return false
}

var identRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// fastContainer handles a field of a struct holding derivations: its value
// is a derivation literal or a struct literal of such fields.
func fastContainer(fd *ast.Field, path []string, shadow *scope, ff *fastFile, used *bool) bool {
	label, ok := plainLabel(fd)
	if !ok || len(path) == 0 && label == "policy" {
		return false
	}
	path = append(path[:len(path):len(path)], label)
	switch v := fd.Value.(type) {
	case *ast.StructLit:
		fs, labels, ok := plainFields(v)
		if !ok || slices.Contains(labels, "builder") {
			return false // a struct with a builder is a derivation to Build
		}
		inner := within(shadow, labels)
		for _, e := range fs {
			if !fastContainer(e, path, inner, ff, used) {
				return false
			}
		}
		return true
	case *ast.BinaryExpr:
		d, ok := fastDerivation(v, fd.Label.Pos(), path, shadow)
		if !ok {
			return false
		}
		*used = true
		ff.decls = append(ff.decls, d)
		return true
	}
	return false
}

// The schema's constraints on what the fast path decodes (defs/*.cue).
var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,199}$`)
	builderRE    = regexp.MustCompile(`^(builtin:[a-z][a-z0-9-]*|@\{[A-Za-z_][A-Za-z0-9_.]*\}(/.+)?)$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	spdxRE       = regexp.MustCompile(`^[(]*[A-Za-z0-9][A-Za-z0-9.+-]*[)]*( (AND|OR|WITH) [(]*[A-Za-z0-9][A-Za-z0-9.+-]*[)]*)*$`)
	outputHashRE = regexp.MustCompile(`^(h1:[A-Za-z0-9+/]{43}=|blake3:[0-9a-f]{64})$`)
)

// fastDerivation decodes heph.#Derivation & {…} whose fields are name,
// builder (required), version, system, args, env, meta, outputHash (string
// literals and lists and structs of them) and inputs (references).
func fastDerivation(e *ast.BinaryExpr, at token.Pos, path []string, shadow *scope) (*fastDecl, bool) {
	if e.Op != token.AND {
		return nil, false
	}
	sel, ok := e.X.(*ast.SelectorExpr)
	if !ok {
		return nil, false
	}
	if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "heph" || shadow.has("heph") {
		return nil, false
	}
	if def, ok := sel.Sel.(*ast.Ident); !ok || def.Name != "#Derivation" {
		return nil, false
	}
	lit, ok := e.Y.(*ast.StructLit)
	if !ok || !lit.Lbrace.IsValid() {
		return nil, false
	}
	d := &fastDecl{path: path, pos: at}
	d.drv = store.Derivation{System: DefaultSystem, Env: map[string]string{}, Attrs: map[string]any{}, Args: []string{}}
	d.meta.Channel = DefaultChannel
	fields, labels, ok := plainFields(lit)
	if !ok || !slices.Contains(labels, "name") || !slices.Contains(labels, "builder") {
		return nil, false
	}
	inner := within(shadow, labels)
	for i, fd := range fields {
		l := labels[i]
		var good bool
		switch l {
		case "name":
			d.drv.Name, good = str(fd.Value)
			good = good && nameRE.MatchString(d.drv.Name) && !strings.Contains(d.drv.Name, "..")
		case "version":
			d.drv.Version, good = str(fd.Value)
		case "system":
			d.drv.System, good = str(fd.Value)
			good = good && (d.drv.System == "x86_64-linux" || d.drv.System == "aarch64-linux")
		case "builder":
			d.drv.Builder, good = str(fd.Value)
			good = good && builderRE.MatchString(d.drv.Builder) && d.drv.Builder != builtins.GoBuild && d.drv.Builder != builtins.FetchGoMod
		case "outputHash":
			d.drv.OutputHash, good = str(fd.Value)
			good = good && outputHashRE.MatchString(d.drv.OutputHash)
		case "args":
			d.drv.Args, good = strList(fd.Value)
		case "env":
			good = strStruct(fd.Value, func(k, v string) bool {
				if !envNameRE.MatchString(k) {
					return false
				}
				d.drv.Env[k] = v
				return true
			})
		case "meta":
			good = fastMeta(fd.Value, &d.meta)
		case "inputs":
			d.inputs, good = fastInputs(fd.Value, inner)
		}
		if !good {
			return nil, false
		}
	}
	return d, true
}

// str decodes a one-line string literal (no interpolation, no bytes, no
// raw #"…"#, no multi-line """ with its indentation rules).
func str(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING || !strings.HasPrefix(lit.Value, `"`) || strings.HasPrefix(lit.Value, `"""`) {
		return "", false
	}
	s, err := literal.Unquote(lit.Value)
	return s, err == nil
}

func strList(e ast.Expr) ([]string, bool) {
	l, ok := e.(*ast.ListLit)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l.Elts))
	for _, el := range l.Elts {
		s, ok := str(el)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// strStruct decodes a struct literal of string literals, each field once.
func strStruct(e ast.Expr, each func(k, v string) bool) bool {
	fs, ls, ok := plainFields(e)
	if !ok {
		return false
	}
	for i, f := range fs {
		v, ok := str(f.Value)
		if !ok || !each(ls[i], v) {
			return false
		}
	}
	return true
}

// fastMeta decodes a #Meta literal as cue.Value.Decode does.
func fastMeta(e ast.Expr, m *Meta) bool {
	fs, ls, ok := plainFields(e)
	if !ok {
		return false
	}
	for i, f := range fs {
		k := ls[i]
		var v string
		if k != "provides" {
			if v, ok = str(f.Value); !ok {
				return false
			}
		}
		switch k {
		case "description":
			m.Description = v
		case "homepage":
			m.Homepage = v
		case "license":
			if !spdxRE.MatchString(v) {
				return false
			}
			m.License = v
		case "channel":
			if v != "testing" && v != "stable" && v != "deprecated" {
				return false
			}
			m.Channel = v
		case "provides":
			if m.Provides, ok = strList(f.Value); !ok {
				return false
			}
		default:
			return false // #Meta is closed
		}
	}
	return true
}

// fastInputs reads inputs: each field a reference, a list literal of
// references or a struct literal of references.
func fastInputs(e ast.Expr, shadow *scope) ([]fastInput, bool) {
	fields, labels, ok := plainFields(e)
	if !ok {
		return nil, false
	}
	inner := within(shadow, labels)
	ins := make([]fastInput, 0, len(fields))
	for i, fd := range fields {
		in := fastInput{label: labels[i]}
		switch v := fd.Value.(type) {
		case *ast.ListLit:
			in.kind = 'l'
			for _, el := range v.Elts {
				r, ok := ref(el, inner)
				if !ok {
					return nil, false
				}
				in.refs = append(in.refs, r)
			}
		case *ast.StructLit:
			in.kind = 's'
			fs, keys, ok := plainFields(v)
			if !ok {
				return nil, false
			}
			scope := within(inner, keys)
			for _, f := range fs {
				r, ok := ref(f.Value, scope)
				if !ok {
					return nil, false
				}
				in.refs = append(in.refs, r)
			}
			in.keys = keys
		default:
			r, ok := ref(fd.Value, inner)
			if !ok {
				return nil, false
			}
			in.kind = 'r'
			in.refs = [][]string{r}
		}
		ins = append(ins, in)
	}
	return ins, true
}

// ref reads a reference a.b.c whose first identifier is not one of
// shadow's (so that it names a field of the package's top level).
func ref(e ast.Expr, shadow *scope) ([]string, bool) {
	var rev []string
	for {
		switch x := e.(type) {
		case *ast.SelectorExpr:
			id, ok := x.Sel.(*ast.Ident)
			if !ok || !identRE.MatchString(id.Name) || reserved[id.Name] {
				return nil, false
			}
			rev = append(rev, id.Name)
			e = x.X
			continue
		case *ast.Ident:
			if !identRE.MatchString(x.Name) || reserved[x.Name] || shadow.has(x.Name) {
				return nil, false
			}
			rev = append(rev, x.Name)
			out := make([]string, len(rev))
			for i, s := range rev {
				out[len(rev)-1-i] = s
			}
			return out, true
		}
		return nil, false
	}
}

// fastNode is a field of the merged configuration: a struct of fields or
// a derivation.
type fastNode struct {
	fields map[string]*fastNode
	decl   *fastDecl
	attr   string
	state  visitState
	hash   store.DrvHash
}

// link merges the files' declarations into one tree (CUE unifies fields of
// one name; the fast path only merges structs), resolves the inputs and
// hashes each derivation after its inputs.
//
// With at, only the derivations at or below the attribute with those
// labels are roots (what they depend on is in the graph all the same).
func link(ffs []*fastFile, at []string) (*Graph, bool) {
	root := &fastNode{fields: make(map[string]*fastNode)}
	var leaves []*fastNode
	for _, ff := range ffs {
		for _, d := range ff.decls {
			n := root
			for i, l := range d.path {
				c := n.fields[l]
				last := i == len(d.path)-1
				if c == nil {
					c = &fastNode{}
					if !last {
						c.fields = make(map[string]*fastNode)
					}
					n.fields[l] = c
				} else if last || c.decl != nil {
					return nil, false // two values of one field: CUE unifies them
				}
				n = c
			}
			n.decl = d
			n.attr = strings.Join(d.path, ".")
			leaves = append(leaves, n)
		}
	}
	g := &Graph{Nodes: make(map[store.DrvHash]*Node, len(leaves)), Roots: make(map[string]store.DrvHash, len(leaves))}
	lookup := func(r []string) *fastNode {
		n := root
		for _, l := range r {
			if n.fields == nil {
				return nil
			}
			if n = n.fields[l]; n == nil {
				return nil
			}
		}
		if n.decl == nil {
			return nil
		}
		return n
	}
	var visit func(n *fastNode) bool
	visit = func(n *fastNode) bool {
		switch n.state {
		case done:
			return true
		case visiting, failed:
			return false
		}
		n.state = visiting
		d := n.decl
		ins := make([]store.DrvHash, 0, len(d.inputs))
		for _, in := range d.inputs {
			for _, r := range in.refs {
				t := lookup(r)
				if t == nil || !visit(t) {
					n.state = failed
					return false
				}
				ins = append(ins, t.hash)
			}
		}
		drv, h := d.last, d.lastHash
		if drv == nil || !slices.Equal(ins, d.lastIns) {
			dc := d.drv
			dc.Inputs = make(map[string]store.DrvHash, len(ins))
			k := 0
			for _, in := range d.inputs {
				for i := range in.refs {
					name := in.label
					switch in.kind {
					case 'l':
						name += "." + strconv.Itoa(i)
					case 's':
						name += "." + in.keys[i]
					}
					dc.Inputs[name] = ins[k]
					k++
				}
			}
			// What Validate checks (names, placeholders naming inputs,
			// NUL bytes) does not depend on the inputs' hashes: once is
			// enough for a declaration.
			if d.last == nil && len(dc.Validate()) > 0 {
				n.state = failed
				return false
			}
			var err error
			if h, err = dc.Hash(); err != nil {
				n.state = failed
				return false
			}
			drv = &dc
			d.last, d.lastIns, d.lastHash = drv, ins, h
		}
		n.state, n.hash = done, h
		g.Decoded++
		pos := posOf(d.pos)
		if prev, dup := g.Nodes[h]; dup {
			if !reflect.DeepEqual(prev.Meta, d.meta) {
				n.state = failed
				return false
			}
			if betterAttr(n.attr, prev.Attr) {
				prev.Attr, prev.Pos = n.attr, pos
			}
		} else {
			g.Nodes[h] = &Node{Hash: h, Drv: drv, Meta: d.meta, Attr: n.attr, Pos: pos}
		}
		return true
	}
	// Visit in the order of the attributes, as a CUE walk would, so that
	// the graph does not depend on the order of the files.
	if at != nil {
		prefix := strings.Join(at, ".")
		var under []*fastNode
		for _, n := range leaves {
			if n.attr == prefix || strings.HasPrefix(n.attr, prefix+".") {
				under = append(under, n)
			}
		}
		if len(under) == 0 {
			return nil, false // not there, or nothing there: CUE says which
		}
		leaves = under
	}
	sort.Slice(leaves, func(i, j int) bool { return leaves[i].attr < leaves[j].attr })
	for _, n := range leaves {
		if !visit(n) {
			return nil, false
		}
		g.Roots[n.attr] = n.hash
	}
	return g, true
}
