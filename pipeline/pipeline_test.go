package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

const config = `package system

import "hephc.dev/heph"

tool: heph.#Derivation & {name: "tool", builder: "builtin:exec", meta: license: "MIT"}
app: heph.#Derivation & {
	name:    "app"
	builder: "builtin:exec"
	meta: license: "GPL-3.0-only"
	inputs: t: tool
}
`

const strictPolicy = `package system

import "hephc.dev/heph"

policy: heph.#Policy & {licenses: allow: ["MIT"]}
`

// writeConfig writes files (name: content) to a fresh directory, an hour
// old: a file modified while it is evaluated is not cached.
func writeConfig(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestEvaluateCachesWhatPassed(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": config})
	req := pipeline.Request{Dir: dir, Args: []string{"system.cue"}, Policy: true, CacheDir: t.TempDir(), UseCache: true, BuildID: "test"}
	first, err := pipeline.Evaluate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.FromCache || len(first.Warnings) > 0 {
		t.Fatalf("first evaluation: got FromCache %v, warnings %v; want a fresh evaluation without warnings", first.FromCache, first.Warnings)
	}
	if got := len(first.Graph.Nodes); got != 2 {
		t.Fatalf("got %d derivations, want 2", got)
	}
	if first.Policies == nil {
		t.Fatal("a fresh evaluation with Policy set returned no policy set")
	}
	second, err := pipeline.Evaluate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !second.FromCache || second.Policies != nil {
		t.Fatalf("second evaluation: got FromCache %v, policies %v; want the cached graph and no policies", second.FromCache, second.Policies)
	}
	if got, want := pipeline.RootHashes(second.Graph), pipeline.RootHashes(first.Graph); !slices.Equal(got, want) {
		t.Errorf("cached roots %v, want %v", got, want)
	}
	// Another build of hephc misses; so does a request that does not use
	// the cache.
	for _, r := range []pipeline.Request{
		func() pipeline.Request { r := req; r.BuildID = "other"; return r }(),
		func() pipeline.Request { r := req; r.UseCache = false; return r }(),
	} {
		res, err := pipeline.Evaluate(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		if res.FromCache {
			t.Errorf("request %+v: got the graph from the cache, want a fresh evaluation", r)
		}
	}
}

func TestEvaluateViolationsComeWithTheGraph(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": config, "policy.cue": strictPolicy})
	cache := t.TempDir()
	req := pipeline.Request{Dir: dir, Policy: true, CacheDir: cache, UseCache: true, BuildID: "test"}
	for range 2 { // a graph that fails its policies is never cached
		res, err := pipeline.Evaluate(context.Background(), req)
		var vs policy.Violations
		if !errors.As(err, &vs) || len(vs) != 1 {
			t.Fatalf("got error %v, want one policy violation", err)
		}
		if res == nil || res.Graph == nil || res.FromCache {
			t.Fatalf("got result %+v with the violations, want the freshly evaluated graph", res)
		}
		if got, want := res.Policies.Sources(), []string{"policy.cue"}; !slices.Equal(got, want) {
			t.Errorf("got policies %v, want %v", got, want)
		}
	}
	// Without Policy, the same configuration evaluates.
	req.Policy = false
	res, err := pipeline.Evaluate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Policies != nil {
		t.Errorf("evaluating without policy returned policies %v", res.Policies.Sources())
	}
}

func TestEvaluateErrorsHaveNoResult(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": "package system\n\nx: {name: 1\n"})
	res, err := pipeline.Evaluate(context.Background(), pipeline.Request{Dir: dir, BuildID: "test"})
	if err == nil || res != nil {
		t.Fatalf("a configuration that does not parse: got result %v, error %v; want an error alone", res, err)
	}
	if _, err := pipeline.Evaluate(context.Background(), pipeline.Request{Dir: "relative", BuildID: "test"}); err == nil {
		t.Error("a relative working directory was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir = writeConfig(t, map[string]string{"system.cue": config})
	if _, err := pipeline.Evaluate(ctx, pipeline.Request{Dir: dir, BuildID: "test"}); !errors.Is(err, context.Canceled) {
		t.Errorf("a canceled context: got %v, want context.Canceled", err)
	}
}

func TestStoreGraph(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": config})
	res, err := pipeline.Evaluate(context.Background(), pipeline.Request{Dir: dir, BuildID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	g := res.Graph
	sg := pipeline.StoreGraph(g)
	if len(sg.Derivations) != len(g.Nodes) || len(sg.Origins) != len(g.Nodes) {
		t.Fatalf("got %d derivations and %d origins, want %d of each", len(sg.Derivations), len(sg.Origins), len(g.Nodes))
	}
	app := g.Roots["app"]
	want := store.Origin{Attr: "app", Pos: srcpos.Pos{File: filepath.Join(dir, "system.cue"), Line: 6, Col: 1}}
	if got := sg.Origins[app]; got != want {
		t.Errorf("origin of app: got %+v, want %+v", got, want)
	}
	if sg.Derivations[app] != g.Nodes[app].Drv {
		t.Error("the store graph's derivation is not the evaluated one")
	}
	// Roots in the order of their CUE paths.
	if got, want := pipeline.RootHashes(g), []store.DrvHash{g.Roots["app"], g.Roots["tool"]}; !slices.Equal(got, want) {
		t.Errorf("root hashes: got %v, want %v", got, want)
	}
}

func TestCacheDir(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HEPHC_CACHE": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c"},
		{map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/x/hephc"},
		{map[string]string{"HOME": "/h"}, "/h/.cache/hephc"},
		{nil, filepath.Join(os.TempDir(), "hephc-cache")},
	} {
		if got := pipeline.CacheDir(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("CacheDir with %v: got %s, want %s", c.env, got, c.want)
		}
	}
}

func TestBuildID(t *testing.T) {
	id := pipeline.BuildID()
	if len(id) != 64 || id != pipeline.BuildID() {
		t.Errorf("got build ID %q, then %q; want one 64-digit hash", id, pipeline.BuildID())
	}
}

func TestEvaluateWarnsWhenTheCacheCannotBeWritten(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": config})
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Evaluate(context.Background(), pipeline.Request{Dir: dir, CacheDir: notDir, BuildID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 {
		t.Errorf("a cache below a file: got warnings %v, want one", res.Warnings)
	}
}

func TestSizeLimits(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": config})
	res, err := pipeline.Evaluate(context.Background(), pipeline.Request{Dir: dir, Policy: true, BuildID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	g := res.Graph
	if ls, err := pipeline.SizeLimits(g); err != nil || ls != nil {
		t.Fatalf("a graph without size limits: got %v, %v; want none", ls, err)
	}
	want := []policy.SizeLimit{{Image: g.Nodes[g.Roots["app"]].Path(), Attr: "app", Max: 10, Rule: "image.maxClosureBytes"}}
	if g.Deferred, err = json.Marshal(want); err != nil {
		t.Fatal(err)
	}
	got, err := pipeline.SizeLimits(g)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	g.Deferred = []byte("{")
	if _, err := pipeline.SizeLimits(g); err == nil {
		t.Error("damaged size limits were read")
	}
}

// TestEvaluateFastPath: a configuration of plain derivations with no
// policy takes the fast path, -A too; with a policy file CUE evaluates
// it; the graphs are the same.
func TestEvaluateFastPath(t *testing.T) {
	dir := writeConfig(t, map[string]string{"system.cue": config})
	fast, err := pipeline.Evaluate(context.Background(), pipeline.Request{Dir: dir, Policy: true})
	if err != nil {
		t.Fatal(err)
	}
	if !fast.Fast || fast.Policies == nil {
		t.Fatalf("fast %v, policies %v: want the fast path with no policies", fast.Fast, fast.Policies)
	}
	both := writeConfig(t, map[string]string{"system.cue": config, "extra.cue": "package system\n\npolicy: {}\n"})
	for _, req := range []pipeline.Request{
		{Dir: dir, Policy: true, PolicyFiles: []string{filepath.Join(both, "extra.cue")}},
		{Dir: dir, Attr: "app"},
		{Dir: dir, Args: []string{"system.cue"}, Policy: false},
	} {
		res, err := pipeline.Evaluate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if want := len(req.PolicyFiles) == 0; res.Fast != want {
			t.Errorf("%+v: fast %v, want %v", req, res.Fast, want)
		}
		for attr, h := range res.Graph.Roots {
			if fast.Graph.Roots[attr] != h {
				t.Errorf("%+v: %s is %s, on the fast path %s", req, attr, h, fast.Graph.Roots[attr])
			}
		}
	}
}
