package store

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// TestResultsDir is the directory of a store's directory where hephc test
// keeps test-result envelopes (in-toto statements of the test-result
// predicate, in DSSE envelopes), as package trust's Dir lays them out:
// one directory per store path's base name, holding the envelopes of the
// results about it, beside the test's output and beside each tested path.
const TestResultsDir = "test-results"

// testResultType is the in-toto predicate of a test result.
const testResultType = "https://in-toto.io/attestation/test-result/v0.1"

// A test's output is its result: a test whose derivation did not change
// is not run again while its output is valid. GC keeps a test's output
// (and its closure) while any path it tests is live, as Nix keeps a
// derivation's outputs while a gcroot keeps the derivation: a result
// lives as long as what it vouches for, and goes with it. The test
// results GC reads are those kept beside the live paths; a result is
// only a reason to keep the test's output, never the tested path (a
// live test output keeps nothing it tests alive).

// testEdge is one test result: the test's output and the paths it tests,
// as indexes of the graph's valid paths.
type testEdge struct {
	test   int32
	tested []int32
}

// testEdges reads the test results kept in Dir/TestResultsDir about valid
// paths. A file that is not such an envelope is skipped: it keeps
// nothing alive.
func (s *Store) testEdges(g *refGraph) ([]testEdge, error) {
	root := filepath.Join(s.Dir, TestResultsDir)
	names, err := readDirNames(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool)
	var edges []testEdge
	for _, base := range names {
		if _, ok := g.index[Dir+"/"+base]; !ok {
			continue
		}
		files, err := readDirNames(filepath.Join(root, base))
		if err != nil {
			continue // not a directory: no results
		}
		for _, f := range files {
			if seen[f] || filepath.Ext(f) != ".json" || f[0] == '.' {
				continue
			}
			seen[f] = true
			if e, ok := readTestEdge(g, filepath.Join(root, base, f)); ok {
				edges = append(edges, e)
			}
		}
	}
	return edges, nil
}

// maxTestResult bounds the envelope GC reads (trust.MaxEnvelopeSize's
// order).
const maxTestResult = 16 << 20

// readTestEdge reads the envelope in file: subjects the test's output
// first, then the tested paths (trust.MarshalTestStatement's order).
func readTestEdge(g *refGraph, file string) (testEdge, bool) {
	info, err := os.Lstat(file)
	if err != nil || !info.Mode().IsRegular() || info.Size() > maxTestResult {
		return testEdge{}, false
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return testEdge{}, false
	}
	var env struct{ Payload string }
	if json.Unmarshal(b, &env) != nil {
		return testEdge{}, false
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return testEdge{}, false
	}
	var st struct {
		PredicateType string
		Subject       []struct{ Name string }
	}
	if json.Unmarshal(payload, &st) != nil || st.PredicateType != testResultType || len(st.Subject) < 2 {
		return testEdge{}, false
	}
	test, ok := g.index[st.Subject[0].Name]
	if !ok {
		return testEdge{}, false
	}
	e := testEdge{test: test}
	for _, s := range st.Subject[1:] {
		if i, ok := g.index[s.Name]; ok && i != test {
			e.tested = append(e.tested, i)
		}
	}
	return e, len(e.tested) > 0
}

// keepTestResults marks live the outputs of the tests of live paths,
// with their closures, until no more are (a test output's closure may
// hold a path another test tests).
func (g *refGraph) keepTestResults(live []bool, edges []testEdge) {
	for {
		var more []int32
		for _, e := range edges {
			if live[e.test] {
				continue
			}
			for _, t := range e.tested {
				if live[t] {
					more = append(more, e.test)
					break
				}
			}
		}
		if len(more) == 0 {
			return
		}
		g.markFrom(live, more)
	}
}
