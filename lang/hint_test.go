package lang

import "testing"

func TestCloseName(t *testing.T) {
	fields := []string{"name", "version", "packages", "ldflags", "inputs", "attrs", "meta", "limits"}
	for _, c := range []struct {
		name       string
		candidates []string
		want       string
	}{
		{"pakages", fields, "packages"},
		{"verison", fields, "version"}, // two neighbours swapped
		{"input", fields, "inputs"},
		{"Packages", fields, "packages"}, // case ignored
		{"tols", []string{"tools", "images"}, "tools"},
		{"zzz", fields, ""},                                               // nothing close
		{"x_sys_v0_33_0", []string{"x_sys_v0_32_0", "x_sys_v0_34_0"}, ""}, // two as close
		{"Busybx", []string{"Busybox", "busybox", "images"}, "Busybox"},   // nearer with case counted
		{"FOO_BAR", []string{"FOO-BAR"}, `"FOO-BAR"`},                     // not an identifier: quoted
		{"go", []string{"go", "io"}, "io"},                                // the name itself is no candidate
		{"a", []string{"b", "c"}, ""},                                     // one letter: both as close
	} {
		if got := closeName(c.name, c.candidates); got != c.want {
			t.Errorf("closeName(%q, %q) = %q, want %q", c.name, c.candidates, got, c.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"tomvl", "tomlv", 1}, {"pakages", "packages", 1},
		{"kitten", "sitting", 3}, {"ca", "abc", 3},
	} {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
