package srcpos

import (
	"slices"
	"testing"
)

func TestZeroPos(t *testing.T) {
	var p Pos
	if p.IsValid() {
		t.Error("the zero Pos is valid")
	}
	if got := p.String(); got != "" {
		t.Errorf("String() of the zero Pos = %q, want \"\"", got)
	}
	if got := p.Rel("/work"); got != "" {
		t.Errorf("Rel of the zero Pos = %q, want \"\"", got)
	}
	if got := p.RelTo("/work"); got != p {
		t.Errorf("RelTo of the zero Pos = %#v, want the zero Pos", got)
	}
	// A file without a line is no position either.
	if (Pos{File: "a.cue"}).IsValid() {
		t.Error("a Pos without a line is valid")
	}
}

func TestString(t *testing.T) {
	for _, c := range []struct {
		p    Pos
		want string
	}{
		{Pos{File: "/work/system.cue", Line: 5, Col: 30}, "/work/system.cue:5:30"},
		{Pos{File: "system.cue", Line: 1, Col: 1}, "system.cue:1:1"},
		{Pos{File: "hephc.dev/heph/derivation.cue", Line: 14, Col: 8}, "hephc.dev/heph/derivation.cue:14:8"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.p, got, c.want)
		}
	}
}

func TestRel(t *testing.T) {
	for _, c := range []struct {
		cwd  string
		p    Pos
		want string
	}{
		{"/work", Pos{File: "/work/system.cue", Line: 5, Col: 30}, "system.cue:5:30"},
		{"/work", Pos{File: "/work/sub/policy.cue", Line: 2, Col: 3}, "sub/policy.cue:2:3"},
		{"/work", Pos{File: "/elsewhere/system.cue", Line: 5, Col: 30}, "/elsewhere/system.cue:5:30"},
		{"/work/sub", Pos{File: "/work/system.cue", Line: 1, Col: 1}, "/work/system.cue:1:1"},
		{"", Pos{File: "/work/system.cue", Line: 1, Col: 1}, "/work/system.cue:1:1"},
		{"/work", Pos{File: "system.cue", Line: 1, Col: 1}, "system.cue:1:1"},
		{"/work", Pos{File: "hephc.dev/heph/image.cue", Line: 3, Col: 9}, "hephc.dev/heph/image.cue:3:9"},
	} {
		if got := c.p.Rel(c.cwd); got != c.want {
			t.Errorf("%#v.Rel(%q) = %q, want %q", c.p, c.cwd, got, c.want)
		}
		rel := c.p.RelTo(c.cwd)
		if got := rel.String(); got != c.want {
			t.Errorf("%#v.RelTo(%q).String() = %q, want %q", c.p, c.cwd, got, c.want)
		}
		if rel.Line != c.p.Line || rel.Col != c.p.Col {
			t.Errorf("RelTo moved %#v to %#v", c.p, rel)
		}
	}
}

func TestRelPath(t *testing.T) {
	for _, c := range []struct{ cwd, path, want string }{
		{"/work", "/work/a.cue", "a.cue"},
		{"/work", "/work", "."},
		{"/work", "/workshop/a.cue", "/workshop/a.cue"},
		{"/work", "/a.cue", "/a.cue"},
		{"/work", "a.cue", "a.cue"},
		{"/work", "", ""},
		{"", "/work/a.cue", "/work/a.cue"},
	} {
		if got := RelPath(c.cwd, c.path); got != c.want {
			t.Errorf("RelPath(%q, %q) = %q, want %q", c.cwd, c.path, got, c.want)
		}
	}
}

func TestCompare(t *testing.T) {
	want := []Pos{
		{},
		{File: "a.cue", Line: 1, Col: 9},
		{File: "a.cue", Line: 2, Col: 1},
		{File: "a.cue", Line: 2, Col: 3},
		{File: "b.cue", Line: 1, Col: 1},
	}
	got := []Pos{want[3], want[4], want[0], want[2], want[1]}
	slices.SortFunc(got, Pos.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("sorted: got %v, want %v", got, want)
	}
	if c := want[2].Compare(want[2]); c != 0 {
		t.Errorf("a position compared to itself: got %d, want 0", c)
	}
}

func TestParse(t *testing.T) {
	for _, p := range []Pos{
		{},
		{File: "/work/system.cue", Line: 5, Col: 30},
		{File: "system.cue", Line: 1, Col: 1},
		{File: "/odd:dir/a:b.cue", Line: 12, Col: 3},
	} {
		got, err := Parse(p.String())
		if err != nil || got != p {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", p.String(), got, err, p)
		}
	}
	for _, s := range []string{"system.cue", "system.cue:5", ":5:30", "system.cue:0:1", "system.cue:x:1", "system.cue:1:-2"} {
		if p, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %#v, want an error", s, p)
		}
	}
}
