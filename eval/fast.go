package eval

import (
	"runtime"
	"strconv"
	"strings"
	"sync"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/parser"

	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/srcpos"
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
//
// With a FileCache (fastdisk.go), what was extracted from each file and
// what linking made of its declarations is kept on disk too, so that a
// new process after an edit parses only the edited files and hashes only
// the derivations whose inputs changed.

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
	// parsed counts the files parsed (for tests: the others came from
	// memory or a FileCache).
	parsed int
}

// fastFile is what one file declares, when the fast path handles it.
type fastFile struct {
	name  string
	sum   [32]byte
	ok    bool
	pkg   string
	decls []*fastDecl
	// dirty says that the file's FileCache entry (if any) is not what
	// the file is now: extracted afresh, or linked anew since.
	dirty bool
}

// fastDecl is one derivation literal: where it is (labels from the top),
// its derivation without inputs, its meta and its inputs' references.
// Its derivation passed Validate when it was extracted (valid).
type fastDecl struct {
	ff     *fastFile
	path   []string
	pos    srcpos.Pos
	drv    store.Derivation
	meta   Meta
	inputs []fastInput
	spare  map[string]store.DrvHash // for derivation: the map valid checked
	// linked says that the declaration was linked before (in this
	// process or, through a FileCache, another): with its inputs' hashes lastIns (in the order they are visited) it
	// made the derivation hashed lastHash; the same inputs make the same
	// derivation, not hashed again. last is that derivation, made when
	// it is first needed.
	linked   bool
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
//
// With disk, what Build does not have in memory it looks for in disk
// first, and what it extracted or linked anew it writes there.
func (f *Fast) Build(files []File, opts Options, disk *FileCache) (g *Graph, ok bool) {
	var at []string // the attribute's labels
	if opts.Attr != "" {
		at = strings.Split(opts.Attr, ".")
		for _, l := range at {
			if !isLabel(l) {
				return nil, false
			}
		}
	}
	if len(files) == 0 {
		return nil, false
	}
	ffs := f.extract(files, disk)
	f.link.Lock()
	defer f.link.Unlock()
	if disk != nil {
		defer disk.store(ffs) // what is new, whatever linking makes of it
	}
	pkg := ""
	for i, ff := range ffs {
		if !ff.ok || i > 0 && ff.pkg != pkg {
			return nil, false
		}
		pkg = ff.pkg
	}
	return link(ffs, at)
}

// extract returns what each file declares, from the cache when the file
// is unchanged, else from disk when it has the file, extracting the
// others; files are read from disk and extracted in parallel.
func (f *Fast) extract(files []File, disk *FileCache) []*fastFile {
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
				if out[i] = disk.load(files[i]); out[i] == nil {
					out[i] = extractFile(files[i])
					f.mu.Lock()
					f.parsed++
					f.mu.Unlock()
				}
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
	ff := &fastFile{name: fl.Name, sum: fl.Sum, dirty: true}
	if defs.IsSchemaFile(fl.Name) {
		ff.dirty = false // the schema is hephc's own: nothing to keep
		return ff
	}
	x, err := parser.ParseFile(fl.Name, fl.Src)
	if err != nil {
		return ff // CUE says what is wrong
	}
	imported, used := false, false
	var ar arenas
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
			if !fastContainer(d, nil, nil, ff, &ar, &used) {
				return ff
			}
		default:
			return ff
		}
	}
	// A package clause is required for an import; an unused import is an
	// error in CUE.
	ff.ok = ff.pkg != "" && imported == used
	if ff.ok {
		internStrings(ff.decls)
	}
	return ff
}

// internStrings makes the declarations of a file share one copy of each
// string they repeat: the parser allocates every label and literal on its
// own, and a file's declarations repeat most of them (the top-level
// labels in their paths and references, inputs' labels and their targets,
// builders, licenses). Fewer, shared strings are less for the collector
// to mark and for linking to read, which compares the labels of
// references with the map's keys, the same strings now.
func internStrings(decls []*fastDecl) {
	tab := make(map[string]string, 3*len(decls))
	in := func(s *string) {
		if t, ok := tab[*s]; ok {
			*s = t
		} else {
			tab[*s] = *s
		}
	}
	all := func(ss []string) {
		for i := range ss {
			in(&ss[i])
		}
	}
	for _, d := range decls {
		all(d.path)
		for _, s := range d.strings() {
			in(s)
		}
		all(d.drv.Args)
		for i := range d.inputs {
			x := &d.inputs[i]
			in(&x.label)
			for _, r := range x.refs {
				all(r)
			}
			all(x.keys)
		}
	}
}
