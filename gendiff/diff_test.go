package gendiff_test

import (
	"fmt"
	"strings"
	"testing"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/gendiff"
	"hephc.dev/hephc/store"
)

// diffGraph makes a side of n packages, package i depending on i-7,
// i-14, … (up to 5 earlier ones); the packages in bumped get version 2.
func diffGraph(tb testing.TB, n int, bumped map[int]bool) *gendiff.Side {
	g := &store.Graph{Derivations: map[store.DrvHash]*store.Derivation{}, Origins: map[store.DrvHash]store.Origin{}}
	side := &gendiff.Side{Graph: g, Roots: map[string]store.DrvHash{}, Sizes: map[store.Path]int64{}}
	hashes := make([]store.DrvHash, n)
	for i := 0; i < n; i++ {
		d := &store.Derivation{Name: fmt.Sprintf("p%d", i), Version: "1", System: "x86_64-linux", Builder: "builtin:exec", Inputs: map[string]store.DrvHash{}}
		if bumped[i] {
			d.Version = "2"
		}
		for k := 1; k <= 5 && i-7*k >= 0; k++ {
			d.Inputs[fmt.Sprintf("d%d", k)] = hashes[i-7*k]
		}
		h, err := d.Hash()
		if err != nil {
			tb.Fatal(err)
		}
		hashes[i] = h
		attr := fmt.Sprintf("pkgs.p%d", i)
		g.Derivations[h] = d
		g.Origins[h] = store.Origin{Attr: attr}
		side.Roots[attr] = h
		side.Sizes[g.PathOf(h)] = int64(1000 + i)
	}
	return side
}

func TestDiffTracesAChangeThroughInputs(t *testing.T) {
	a := diffGraph(t, 30, nil)
	b := diffGraph(t, 30, map[int]bool{3: true})
	d, err := gendiff.Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	// p3 changed; p10, p17, p24 depend on it directly or not.
	got := map[string]string{}
	for _, c := range d.Changed {
		got[c.Key] = fmt.Sprintf("%s→%s", c.OldVersion, c.NewVersion)
	}
	want := map[string]string{"pkgs.p3": "1→2", "pkgs.p10": "1→1", "pkgs.p17": "1→1", "pkgs.p24": "1→1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got changes %v, want %v", got, want)
	}
	for _, c := range d.Changed {
		if len(c.Why) != 1 || c.Why[0].Attr != "pkgs.p3" || c.Why[0].Field != "version" {
			t.Errorf("%s: got why %+v, want pkgs.p3's version", c.Key, c.Why)
		}
	}
	if len(d.Added)+len(d.Removed) != 0 {
		t.Errorf("got added %d, removed %d, want none", len(d.Added), len(d.Removed))
	}
}

// BenchmarkDiff diffs two 10,000-package generations in which 100
// packages changed version (and everything depending on them was rebuilt).
func BenchmarkDiff(b *testing.B) {
	const n = 10000
	bumped := map[int]bool{}
	for i := 0; i < 100; i++ {
		bumped[(i*9973)%n] = true
	}
	b.Run(fmt.Sprintf("packages=%d", n), func(b *testing.B) {
		old := diffGraph(b, n, nil)
		new := diffGraph(b, n, bumped)
		b.ResetTimer()
		for b.Loop() {
			d, err := gendiff.Compare(old, new)
			if err != nil {
				b.Fatal(err)
			}
			if len(d.Changed) < 100 {
				b.Fatalf("got %d changes, want at least 100", len(d.Changed))
			}
		}
	})
}

// initramfs adds an initramfs derivation written at attr, with services,
// built by builder.
func initramfs(t *testing.T, side *gendiff.Side, attr, builder string, services map[string]any) {
	t.Helper()
	d := &store.Derivation{Name: "initramfs", System: "x86_64-linux", Builder: builder, Attrs: map[string]any{"services": services}}
	h, err := d.Hash()
	if err != nil {
		t.Fatal(err)
	}
	side.Graph.Derivations[h] = d
	side.Graph.Origins[h] = store.Origin{Attr: attr}
	side.Roots[attr] = h
}

func TestDiffServices(t *testing.T) {
	a, b := diffGraph(t, 3, nil), diffGraph(t, 3, nil)
	ssh := map[string]any{"command": "/bin/sshd"}
	initramfs(t, a, "images.server.initramfs", builtins.Uroot, map[string]any{"sshd": ssh, "telnetd": map[string]any{"command": "/bin/telnetd"}})
	initramfs(t, b, "images.server.initramfs", builtins.Uroot, map[string]any{"sshd": map[string]any{"command": "/bin/sshd", "args": []any{"-D"}}, "sentinel": ssh})
	// A derivation that is not an initramfs has no services, whatever
	// its attrs say.
	initramfs(t, b, "pkgs.other", "@{tool}/bin/x", map[string]any{"fake": ssh})
	d, err := gendiff.Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range d.Services {
		got = append(got, fmt.Sprintf("%s %s %q→%q", s.Image, s.Service, s.Old, s.New))
	}
	want := []string{
		`images.server sentinel ""→"{\"command\":\"/bin/sshd\"}"`,
		`images.server sshd "{\"command\":\"/bin/sshd\"}"→"{\"args\":[\"-D\"],\"command\":\"/bin/sshd\"}"`,
		`images.server telnetd "{\"command\":\"/bin/telnetd\"}"→""`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got services\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
