package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTrustQuorumE2E is the end to end: two stores, each with its
// owner's key (alice's, bob's), build age from system.cue; the
// attestations of both are combined (bob's export imported into alice's
// store, which has the same bytes); a third store, whose owner asks for
// two people, refuses age with bob's signature alone and imports it with
// both. The toolchain and modules are fetched once, by the first store:
// the second imports them from its export, admitted on their pins.
func TestTrustQuorumE2E(t *testing.T) {
	t.Parallel() // one of the long e2e tests run two at a time (systemstore_test.go)
	e2e(t, "fetches the Go toolchain and age's modules, and builds age twice")
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	cache := filepath.Join(work, "cache")
	getenv := func(k string) string {
		if k == "HEPHC_CACHE" {
			return cache
		}
		return os.Getenv(k)
	}
	hephc := func(storeDir string, want int, args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: getenv, store: storeDir}
		start := time.Now()
		if code := run(e, append([]string{"--store", storeDir}, args...)); code != want {
			t.Fatalf("hephc %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, stdout.String(), stderr.String())
		}
		t.Logf("hephc --store %s %s: %v", filepath.Base(storeDir), strings.Join(args, " "), time.Since(start).Round(10*time.Millisecond))
		return stdout.String(), stderr.String()
	}
	keys := filepath.Join(work, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	pub := map[string]string{}
	for _, name := range []string{"alice", "bob", "carol"} {
		out, _ := hephc(filepath.Join(work, "unused"), 0, "key", "generate", "--name", name, "--dir", keys)
		pub[name] = strings.TrimSpace(out)
	}
	trustPolicy := fmt.Sprintf("trust: {\n\tpeople: {alice: keys: [{key: %q}], bob: keys: [{key: %q}], carol: keys: [{key: %q}]}\n\trules: [{signatures: 2}]\n}", pub["alice"], pub["bob"], pub["carol"])
	newStore := func(name, signer string) string {
		dir := filepath.Join(work, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := "package store\n\nimport \"hephc.dev/heph\"\n\nheph.#StoreConfig & {\n"
		if signer != "" {
			cfg += fmt.Sprintf("\tsigningKey: %q\n", filepath.Join(keys, signer+".key"))
		}
		cfg += "\tpolicy: " + strings.ReplaceAll(trustPolicy, "\n", "\n\t") + "\n}\n"
		if err := os.WriteFile(filepath.Join(dir, OwnerConfigFile), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a, b, c := newStore("a", "alice"), newStore("b", "bob"), newStore("c", "")
	const age = "base.packages.age"

	// alice's store fetches everything and builds age; the build is
	// attested with her key as it is installed.
	start := time.Now()
	out, _ := hephc(a, 0, "realize", "--no-link", "-A", age, "system.cue")
	agePath := strings.TrimSpace(out)
	t.Logf("store a: age from an empty store in %v", time.Since(start).Round(time.Second))
	out, _ = hephc(a, 0, "attestations", agePath)
	if !regexp.MustCompile(`-age +built +alice +SHA256:\S+ +\S+ +valid`).MatchString(out) {
		t.Fatalf("alice's build of age is not attested:\n%s", out)
	}

	// bob's store gets the pinned sources from alice's export (admitted
	// on their pins: no signatures needed), and builds age itself.
	fods := fixedOutputPaths(t, repo, age)
	hephc(a, 0, append([]string{"export", "--no-attestations"}, append(fods, filepath.Join(work, "sources"))...)...)
	_, errOut := hephc(b, 0, "import", filepath.Join(work, "sources"))
	if !strings.Contains(errOut, fmt.Sprintf("imported %d paths (0 present already)", len(fods))) {
		t.Fatalf("bob's store did not import the %d sources on their pins:\n%s", len(fods), errOut)
	}
	start = time.Now()
	out, errOut = hephc(b, 0, "realize", "--no-link", "-A", age, "system.cue")
	t.Logf("store b: age built on imported sources in %v", time.Since(start).Round(time.Second))
	if strings.TrimSpace(out) != agePath || !strings.Contains(errOut, "fetched 0, built 2") || !strings.Contains(errOut, "built go-std-cache") {
		t.Fatalf("bob's store: got %q, %s; want %s and the toolchain's std cache built, nothing fetched", out, errOut, agePath)
	}
	// The toolchain's std cache is a build input of age that bob built
	// too: his word on it travels with his word on age.
	stdCache := regexp.MustCompile(`/heph/store/\S+-go-std-cache`).FindString(errOut)
	infoA, _ := hephc(a, 0, "path-info", "--json", agePath)
	infoB, _ := hephc(b, 0, "path-info", "--json", agePath)
	if hashOf(infoA) != hashOf(infoB) {
		t.Fatalf("alice and bob built different bytes of age: %s and %s (not reproducible)", hashOf(infoA), hashOf(infoB))
	}

	// A store asking for two people refuses bob's word alone: nothing
	// imported.
	hephc(b, 0, "export", "--closure", agePath, filepath.Join(work, "bob-oci"))
	// (the std cache alone: its closure holds the toolchain, which bob
	// imported as a source, without the derivation an export needs)
	hephc(b, 0, "export", stdCache, filepath.Join(work, "bob-std-oci"))
	_, errOut = hephc(c, 1, "import", filepath.Join(work, "bob-oci"))
	if !strings.Contains(errOut, "refused, nothing imported") || !strings.Contains(errOut, "-age: 1 of 2 signatures: bob built or reproduced it; missing any 1 of alice, carol") {
		t.Fatalf("the third store did not refuse age on one signature:\n%s", errOut)
	}
	hephc(c, 1, "path-info", agePath)

	// Combined: alice's store imports bob's archive of the bytes it has,
	// keeping his attestation beside hers; its export carries both.
	_, errOut = hephc(a, 0, "import", filepath.Join(work, "bob-oci"))
	if !regexp.MustCompile(`imported 0 paths \([0-9]+ present already\), [1-9][0-9]* attestations added`).MatchString(errOut) {
		t.Fatalf("alice's store did not combine bob's attestations:\n%s", errOut)
	}
	hephc(a, 0, "import", filepath.Join(work, "bob-std-oci"))
	hephc(a, 0, "export", "--closure", agePath, filepath.Join(work, "both-oci"))
	out, errOut = hephc(c, 0, "import", filepath.Join(work, "both-oci"))
	if !strings.Contains(out, "imported "+agePath) || !strings.Contains(errOut, "-age: admitted by the store owner's policy") || !strings.Contains(errOut, "built by alice, bob") {
		t.Fatalf("the third store did not import age on two signatures:\n%s%s", out, errOut)
	}
	hephc(c, 0, "verify", agePath)

	// alice rebuilds age and gets the same bytes: a reproduction, which
	// she attests; her store's closure of age meets the policy.
	start = time.Now()
	out, _ = hephc(a, 0, "realize", "--check", "-A", age, "system.cue")
	t.Logf("store a: realize --check of age in %v", time.Since(start).Round(time.Second))
	if !strings.HasPrefix(out, "reproduced "+agePath+" blake3:") {
		t.Fatalf("realize --check of age: %s", out)
	}
	out, errOut = hephc(a, 0, "verify", "--trust", "system.cue", "-A", age)
	if !strings.Contains(errOut, fmt.Sprintf("%d paths, 0 fail", len(fods)+2)) || !regexp.MustCompile(`ok +\S+-age +base.packages.age +built by alice, bob, reproduced by alice`).MatchString(out) {
		t.Fatalf("verify --trust of age in alice's store:\n%s%s", out, errOut)
	}
}

// fixedOutputPaths lists the fixed-output paths (the pinned sources) of
// attr's derivations in system.cue.
func fixedOutputPaths(t *testing.T, repo, attr string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, cwd: repo, getenv: os.Getenv}
	g, _, err := evaluate(e, evaluation{attr: attr, args: []string{"system.cue"}, policy: true, useCache: true})
	if err != nil {
		t.Fatal(err)
	}
	var fods []string
	for _, n := range g.Nodes {
		if n.Drv.IsFixedOutput() {
			fods = append(fods, n.Path().String())
		}
	}
	if len(fods) == 0 {
		t.Fatalf("%s has no fixed-output derivations", attr)
	}
	slices.Sort(fods)
	return fods
}

// hashOf is the content hash in path-info --json's output.
func hashOf(pathInfo string) string {
	m := regexp.MustCompile(`"contentHash": "([^"]+)"`).FindStringSubmatch(pathInfo)
	if m == nil {
		return ""
	}
	return m[1]
}
