package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"hephc.dev/hephc/internal/registrytest"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/store"
)

// TestBinaryCacheSystem is the binary cache end to end: store A (the
// shared store, where system.cue is realized) signs every path it built
// with two keys and pushes everything the configuration needs to a real
// registry; store B, empty, whose owner requires two signatures,
// realizes system.cue building nothing and boots the workstation; store
// C, whose owner requires three, substitutes no signed path with
// --substitute-only and says why for each. age's package image is the
// same from stores A and B, skopeo reads it, and age runs from its
// layers unpacked into a chroot.
func TestBinaryCacheSystem(t *testing.T) {
	t.Parallel() // one of the long e2e tests run two at a time (systemstore_test.go)
	storeA, _, realizeTook := systemStore(t)
	regs := registrytest.All(t)
	v3 := regs[0]
	if v3.Name != "distribution-v3" {
		t.Fatalf("registries %v: want distribution v3 first", regs)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	cli := &inProcess{t: t, cwd: repo}
	hephc, must := cli.run, cli.must

	// Keys, and store A's signatures of every path it built (the pinned
	// sources are admitted on their pins).
	for _, n := range []string{"alice", "bob", "carol"} {
		must(storeA, "key", "generate", "--name", n, "--dir", work)
	}
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, cwd: repo, getenv: os.Getenv, store: storeA}
	g, _, err := evaluate(e, evaluation{args: []string{"system.cue"}, policy: true, useCache: true})
	if err != nil {
		t.Fatal(err)
	}
	sg := pipeline.StoreGraph(g)
	order, err := sg.Closure(pipeline.RootHashes(g)...)
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, h := range order {
		if !sg.Derivations[h].IsFixedOutput() {
			built = append(built, sg.PathOf(h).String())
		}
	}
	// The results of the tests the policy requires, which store A ran
	// and push sends with the system.
	tests, err := policyTests(g)
	if err != nil || len(tests) == 0 {
		t.Fatalf("the policy's tests: %d, %v", len(tests), err)
	}
	var results []store.Path
	signed := slices.Clone(built)
	for _, tt := range tests {
		results = append(results, tt.Path())
		signed = append(signed, tt.Path().String())
	}
	for _, n := range []string{"alice", "bob"} {
		must(storeA, append([]string{"sign", "--only", "--key", filepath.Join(work, n+".key")}, signed...)...)
	}

	// Push everything system.cue needs.
	cache := v3.Repo("system")
	start := time.Now()
	_, pushErr := must(storeA, "push", "--to", cache, "system.cue")
	pushTook := time.Since(start)
	t.Logf("push: %s", lastLine(pushErr))
	if !regexp.MustCompile(`^pushed \d+ paths \(0 there already\) and \d+ attestations`).MatchString(lastLine(pushErr)) {
		t.Fatalf("push: %s", pushErr)
	}

	owner := func(dir string, n int) {
		var keys []string
		for _, name := range []string{"alice", "bob", "carol"} {
			b, err := os.ReadFile(filepath.Join(work, name+".pub"))
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, name+`: keys: [{key: "`+strings.TrimSpace(string(b))+`"}]`)
		}
		cfg := "package store\n\nimport \"hephc.dev/heph\"\n\nheph.#StoreConfig & {policy: trust: {\n\tpeople: {\n\t\t" + strings.Join(keys, "\n\t\t") +
			"\n\t}\n\trules: [{signatures: " + string(rune('0'+n)) + "}]\n}}\n"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, OwnerConfigFile), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Store B: two signatures required. Everything substituted, the
	// results of the tests its policy requires included: nothing built,
	// no test run; and the workstation boots.
	storeB := filepath.Join(work, "b")
	owner(storeB, 2)
	start = time.Now()
	_, subErr := must(storeB, "realize", "--no-link", "--substituter", cache, "system.cue")
	substTook := time.Since(start)
	if !strings.Contains(subErr, "nothing to do") || strings.Contains(subErr, "not substituted") {
		t.Fatalf("store B built or refused something:\n%s", subErr)
	}
	if m := regexp.MustCompile(`(?m)^(building|booting) .*`).FindString(subErr); m != "" || strings.Contains(subErr, "for the tests the policy requires") {
		t.Fatalf("store B built or ran a test (%q):\n%s", m, subErr)
	}
	stB, err := store.Open(storeB)
	if err != nil {
		t.Fatal(err)
	}
	validB, err := stB.ValidPaths(context.Background(), results)
	stB.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range results {
		if !validB[p] {
			t.Errorf("store B: the test result %s was not substituted", p)
		}
	}
	substLine := regexp.MustCompile(`(?m)^substituted \d+ of \d+ paths .*$`).FindString(subErr)
	t.Logf("store B: %s", substLine)
	t.Logf("figures: realize from sources %v; push %v (%s); substitute into an empty store %v (%s)",
		realizeTook.Round(time.Second), pushTook.Round(100*time.Millisecond), lastLine(pushErr), substTook.Round(100*time.Millisecond), substLine)
	ws := filepath.Join(storeB, "store", g.Nodes[g.Roots["images.workstation"]].Path().Base())
	took := bootAndExpect(t, ws, "HEPH-SELFTEST OK", 180*time.Second)
	t.Logf("the workstation from store B booted to its self-test line in %v", took.Round(time.Millisecond))

	// Store C: three required. With --substitute-only nothing signed is
	// substituted and each such path says why; nothing is built.
	storeC := filepath.Join(work, "c")
	owner(storeC, 3)
	code, _, cErr := hephc(storeC, "realize", "--no-link", "--substitute-only", "--substituter", cache, "system.cue")
	if code != 1 {
		t.Fatalf("store C: exit %d, want 1\n%s", code, cErr)
	}
	why := regexp.MustCompile(`(?m)^not substituted: (/heph/store/\S+): .*: 2 of 3 signatures: alice, bob built or reproduced it; missing any 1 of carol`)
	refused := map[string]bool{}
	for _, m := range why.FindAllStringSubmatch(cErr, -1) {
		if refused[m[1]] {
			t.Errorf("%s refused twice", m[1])
		}
		refused[m[1]] = true
	}
	// A test's result is admitted as strictly as what it tests: with two
	// of three signatures, refused (and the test would run here).
	for _, p := range signed {
		if !refused[p] {
			t.Errorf("store C: %s not refused with its reason", p)
		}
	}
	if strings.Contains(cErr, "\nbuilding ") || !strings.Contains(cErr, "nothing built") {
		t.Errorf("store C:\n%s", cErr)
	}

	// age's package image: the same digest from stores A and B; skopeo
	// reads it from the registry and copies it; age runs from its layers.
	var digests []string
	for _, st := range []string{storeA, storeB} {
		out, _ := must(st, "image", "-A", "base.packages.age", "--oci-layout", filepath.Join(work, "age-"+filepath.Base(st)), "system.cue")
		digests = append(digests, strings.TrimSpace(out))
	}
	if digests[0] != digests[1] {
		t.Errorf("age's image: %s from store A, %s from store B", digests[0], digests[1])
	}
	ageRepo := v3.Repo("age")
	_, imgErr := must(storeB, "image", "-A", "base.packages.age", "--to", ageRepo+":latest", "--mount-from", cache, "system.cue")
	t.Logf("age image: %s", lastLine(imgErr))
	if !regexp.MustCompile(`\((\d+ B|[0-9.]+ KiB) sent\)`).MatchString(imgErr) {
		t.Errorf("age's image sent more than its config and manifest: %s", imgErr)
	}
	docker := "docker://" + strings.TrimPrefix(ageRepo, "oci://") + ":latest"
	if out, err := exec.Command("skopeo", "inspect", "--tls-verify=false", docker).CombinedOutput(); err != nil || !strings.Contains(string(out), "-age/bin") {
		t.Errorf("skopeo inspect: %v\n%s", err, out)
	}
	copied := filepath.Join(work, "age-copied")
	if out, err := exec.Command("skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", docker, "oci:"+copied+":latest").CombinedOutput(); err != nil {
		t.Errorf("skopeo copy: %v\n%s", err, out)
	}
	root := unpackLayout(t, filepath.Join(work, "age-"+filepath.Base(storeB)))
	age := filepath.Join(g.Nodes[g.Roots["base.packages.age"]].Path().String(), "bin", "age-keygen")
	cmd := exec.Command(age)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "AGE-SECRET-KEY-") {
		t.Errorf("age-keygen in a chroot of age's image: %v\n%s", err, out)
	}
}

// unpackLayout extracts the layers of the one image of the layout dir, in
// order, into a new directory (as a container runtime does) with GNU tar.
func unpackLayout(t *testing.T, dir string) string {
	t.Helper()
	var index struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	var manifest struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	readJSON(t, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(index.Manifests[0].Digest, "sha256:")), &manifest)
	root := t.TempDir()
	for _, l := range manifest.Layers {
		blob := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:"))
		if out, err := exec.Command("tar", "-xzf", blob, "-C", root).CombinedOutput(); err != nil {
			t.Fatalf("tar -xzf %s: %v\n%s", blob, err, out)
		}
	}
	return root
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
