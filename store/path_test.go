package store

import (
	"strings"
	"testing"
)

func TestCheckNameAccepts(t *testing.T) {
	for _, name := range []string{
		"a",
		"hello",
		"hello-2.12.1",
		"go1.26.8.linux-amd64",
		"A_b+c?d=e",
		"x.",
		"-leading-dash",
		strings.Repeat("n", MaxNameLen),
	} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		}
	}
}

func TestCheckNameRejects(t *testing.T) {
	for _, name := range []string{
		"",
		".",
		"..",
		".hidden",
		"a..b",
		"a/b",
		"../x",
		strings.Repeat("n", MaxNameLen+1),
		"café",
		"hello world",
		" lead",
		"trail ",
		"tab\there",
		"nul\x00",
		"new\nline",
		"a:b",
		"a@{x}",
		"star*",
	} {
		if err := CheckName(name); err == nil {
			t.Errorf("CheckName(%q) = nil, want an error", name)
		}
	}
}

func TestPathRoundTrip(t *testing.T) {
	h := sampleDrvHash()
	for _, name := range []string{"a", "hello-2.12.1", strings.Repeat("z", MaxNameLen)} {
		p := Path{Hash: h, Name: name}
		s := p.String()
		if want := "/heph/store/" + h.String() + "-" + name; s != want {
			t.Errorf("String() = %q, want %q", s, want)
		}
		if want := h.String() + "-" + name; p.Base() != want {
			t.Errorf("Base() = %q, want %q", p.Base(), want)
		}
		for _, in := range []string{s, p.Base()} {
			got, err := ParsePath(in)
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", in, err)
			}
			if got != p {
				t.Errorf("ParsePath(%q) = %+v, want %+v", in, got, p)
			}
		}
	}
}

func TestParsePathNameWithDash(t *testing.T) {
	// The hash has a fixed length, so a dash in the name is not ambiguous.
	h := sampleDrvHash()
	got, err := ParsePath(Dir + "/" + h.String() + "-a-b-c")
	if err != nil {
		t.Fatalf("ParsePath: %v", err)
	}
	if got.Name != "a-b-c" || got.Hash != h {
		t.Errorf("ParsePath = %+v, want name a-b-c and hash %v", got, h)
	}
}

func TestParsePathRejects(t *testing.T) {
	hs := sampleDrvHash().String()
	for _, s := range []string{
		"",
		Dir,
		Dir + "/",
		Dir + "/" + hs,
		Dir + "/" + hs + "-",
		Dir + "/" + hs + "_name",
		Dir + "/" + hs + "-.",
		Dir + "/" + hs + "-..",
		Dir + "/" + hs + "-a/b",
		Dir + "/" + hs + "-../x",
		Dir + "/" + hs + "-café",
		Dir + "/" + hs + "-with space",
		Dir + "/" + hs + "-" + strings.Repeat("n", MaxNameLen+1),
		Dir + "/" + hs + "-a/",
		"/nix/store/" + hs + "-a",
		"/heph/store2/" + hs + "-a",
		Dir + "//" + hs + "-a",
		"heph/store/" + hs + "-a",
		Dir + "/" + strings.ToUpper(hs) + "-a",
		Dir + "/" + hs[:51] + "-a",
		Dir + "/" + hs[:20] + "e" + hs[21:] + "-a",
	} {
		if p, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q) = %+v, nil; want an error", s, p)
		}
	}
}
