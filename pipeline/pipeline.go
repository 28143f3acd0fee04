// Package pipeline is hephc's evaluation pipeline as a library, for the CLI
// and a package server alike: it loads a configuration (lang), walks it
// into the derivation graph (eval), enforces its policies (policy), keeps
// the graph in the evaluation cache, and gives the graph as the store
// sees it. It returns data and errors and prints nothing; it parses no
// flags and reads no environment it is not handed. It never imports cmd,
// and never sandbox, builder or realize: evaluating builds nothing.
package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/policy"
)

// Request is what Evaluate is asked for.
type Request struct {
	// Dir is the working directory (absolute): relative Args and
	// PolicyFiles are resolved against it, and diagnostics name files
	// relative to it.
	Dir string
	// Args name the configuration: .cue files of one directory, or one
	// directory. None means Dir.
	Args []string
	// Attr is the CUE path to evaluate, e.g. images.workstation; empty
	// means the whole configuration.
	Attr string
	// Policy enforces the configuration's policies (its policy field and
	// policy.cue beside it) and those of PolicyFiles.
	Policy      bool
	PolicyFiles []string
	// CacheDir is hephc's cache directory (see CacheDir); the evaluation
	// cache is its eval directory. Empty means no cache at all. A graph
	// evaluated is written to the cache whenever it is set and the graph
	// passed its policies.
	CacheDir string
	// UseCache takes the graph from the cache when the cache has it for
	// an unchanged configuration.
	UseCache bool
	// BuildID identifies the hephc that evaluates, so that another build
	// misses the cache; empty means BuildID().
	BuildID string
}

// Result is what Evaluate found.
type Result struct {
	Graph *eval.Graph
	// Policies are the policies checked; nil when the request enforced
	// none, or when the graph came from the cache (where only a graph
	// that passed its policies is kept).
	Policies *policy.Set
	// FromCache says that the graph was read from the evaluation cache.
	FromCache bool
	// Fast says that the graph was made on the fast path (eval.Fast), not
	// by CUE's evaluator: its nodes have no CUE values.
	Fast bool
	// Warnings are problems that did not stop the evaluation, e.g. a
	// cache that could not be written (which only costs time).
	Warnings []error
}

// Evaluate loads the configuration of req, builds its graph and enforces
// its policies, through the evaluation cache when req asks for it.
//
// When the policies are violated and nothing else is wrong, Evaluate
// returns both the Result (graph and policies, for a report) and the
// policy.Violations as its error. Any other error comes without a Result.
func Evaluate(ctx context.Context, req Request) (*Result, error) {
	if !filepath.IsAbs(req.Dir) {
		return nil, fmt.Errorf("evaluating: working directory %q is not absolute", req.Dir)
	}
	key := cacheRequest(req)
	var cache *eval.Cache
	if req.CacheDir != "" {
		cache = &eval.Cache{Dir: filepath.Join(req.CacheDir, "eval")}
	}
	if cache != nil && req.UseCache {
		if g, ok := cache.Get(key); ok {
			return &Result{Graph: g, FromCache: true}, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	started := time.Now()
	var res *Result
	var deps, dirs []string
	if g, cfg, ok := evaluateFast(req, key); ok {
		lock, err := checkPins(cfg, g)
		if err != nil {
			return nil, err
		}
		res = &Result{Graph: g, Fast: true}
		if req.Policy {
			res.Policies = &policy.Set{} // evaluateFast made sure there is none
		}
		deps, dirs = union(cfg.Deps, lock), cfg.Dirs
	} else {
		var err error
		if res, deps, dirs, err = evaluateCUE(ctx, req, key); err != nil {
			return res, err
		}
	}
	if cache == nil || eval.ChangedSince(started, deps, dirs) {
		return res, nil // edited while it was read: not cached
	}
	if err := cache.Put(key, deps, dirs, res.Graph); err != nil {
		res.Warnings = append(res.Warnings, err)
	}
	return res, nil
}

// fast is the fast path's cache of the files it has read (by content) and
// the derivations they made, for the life of the process: a server or a
// watcher evaluating a configuration again after an edit reads and hashes
// again only what the edit changed. With a cache directory, the same is
// kept on disk (eval.FileCache, the eval cache's files directory) for the
// next process.
var fast eval.Fast

// evaluateFast evaluates req on the fast path (eval.Fast) when it can:
// files that are all there is to the configuration
// (lang.Loader.Simple), and no policy to enforce (policies read the
// derivations' CUE values, which only CUE's evaluation has). ok=false
// means CUE evaluates it (evaluateCUE), which is also what gives every
// diagnostic: the fast path refuses any configuration with an error.
func evaluateFast(req Request, key eval.Request) (*eval.Graph, *lang.Config, bool) {
	dir, files, ok := lang.NewLoader(req.Dir).Simple(req.Args...)
	if !ok {
		return nil, nil, false
	}
	cfg := &lang.Config{Dir: dir, Files: files, Deps: files, Dirs: []string{dir}}
	if req.Policy && len(policy.Files(cfg, key.PolicyFiles)) > 0 {
		return nil, nil, false
	}
	srcs, ok := lang.ReadSources(files)
	if !ok {
		return nil, nil, false
	}
	fs := make([]eval.File, len(srcs))
	for i, s := range srcs {
		fs[i] = eval.File{Name: s.Name, Sum: s.Sum, Src: s.Src}
	}
	var disk *eval.FileCache
	if req.CacheDir != "" {
		disk = &eval.FileCache{Dir: filepath.Join(req.CacheDir, "eval", "files"), Build: key.Build, Fresh: !req.UseCache}
	}
	g, ok := fast.Build(fs, eval.Options{Attr: req.Attr}, disk)
	return g, cfg, ok
}

// evaluateCUE loads the configuration with CUE, walks it into the graph
// and enforces its policies; it returns the files and directories the
// result depends on.
func evaluateCUE(ctx context.Context, req Request, key eval.Request) (res *Result, deps, dirs []string, err error) {
	l := lang.NewLoader(req.Dir)
	cfg, err := l.Load(req.Args...)
	if err != nil {
		return nil, nil, nil, err
	}
	g, err := eval.Build(cfg.Value, eval.Options{Attr: req.Attr})
	if err != nil {
		return nil, nil, nil, cfg.Hint(err) // did you mean …?
	}
	lock, err := checkPins(cfg, g) // pinlock.go
	if err != nil {
		return nil, nil, nil, err
	}
	res = &Result{Graph: g}
	deps, dirs = union(cfg.Deps, lock), cfg.Dirs
	if req.Policy {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		res.Policies, err = policy.Load(l, cfg, policy.Files(cfg, key.PolicyFiles))
		if err != nil {
			return nil, nil, nil, err
		}
		checked, err := policy.Check(cfg.Value, g, res.Policies)
		if err != nil {
			return nil, nil, nil, err
		}
		if len(checked.Limits) > 0 {
			if g.Deferred, err = json.Marshal(checked.Limits); err != nil {
				return nil, nil, nil, fmt.Errorf("keeping the policy's size limits: %w", err)
			}
		}
		if checked.Violations != nil {
			return res, nil, nil, checked.Violations // not cached: only a graph that passed is
		}
		deps, dirs = union(deps, res.Policies.Deps), union(dirs, res.Policies.Dirs)
	}
	return res, deps, dirs, nil
}

// cacheRequest is the evaluation cache's key for req: its arguments and
// policy files made absolute, the directory itself when there are none.
func cacheRequest(req Request) eval.Request {
	key := eval.Request{Build: req.BuildID, Attr: req.Attr, Policy: req.Policy}
	if key.Build == "" {
		key.Build = BuildID()
	}
	for _, a := range req.Args {
		key.Args = append(key.Args, absPath(req.Dir, a))
	}
	if len(req.Args) == 0 {
		key.Args = []string{req.Dir}
	}
	for _, f := range req.PolicyFiles {
		key.PolicyFiles = append(key.PolicyFiles, absPath(req.Dir, f))
	}
	return key
}

// absPath resolves p against dir.
func absPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// union returns the sorted union of two sorted lists.
func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
