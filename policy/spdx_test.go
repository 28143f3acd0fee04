package policy

import (
	"slices"
	"testing"
)

func TestLicenseAllowed(t *testing.T) {
	allowed := map[string]bool{"mit": true, "apache-2.0": true, "gpl-2.0-only": true}
	for _, tc := range []struct {
		expr string
		ok   bool
		bad  []string
		err  bool
	}{
		{expr: "MIT", ok: true},
		{expr: "mit", ok: true}, // SPDX identifiers match without case
		{expr: "GPL-3.0-only", bad: []string{"GPL-3.0-only"}},
		{expr: "GPL-3.0-only OR MIT", ok: true},
		{expr: "MIT OR GPL-3.0-only", ok: true},
		{expr: "MIT AND GPL-3.0-only", bad: []string{"GPL-3.0-only"}},
		{expr: "GPL-2.0-only WITH Linux-syscall-note", ok: true},
		{expr: "EPL-2.0 WITH Classpath-exception-2.0", bad: []string{"EPL-2.0"}},
		{expr: "(MIT OR EPL-2.0) AND Apache-2.0", ok: true},
		{expr: "(EPL-2.0 OR BSL-1.0) AND MIT", bad: []string{"EPL-2.0", "BSL-1.0"}},
		{expr: "MIT AND (Apache-2.0 OR GPL-2.0-only)", ok: true},
		{expr: "", err: true},
		{expr: "MIT AND", err: true},
		{expr: "(MIT", err: true},
		{expr: "MIT)", err: true},
		{expr: "MIT WITH", err: true},
		{expr: "MIT Apache-2.0", err: true},
	} {
		ok, bad, err := licenseAllowed(tc.expr, allowed)
		if (err != nil) != tc.err {
			t.Errorf("%q: got error %v, want error %v", tc.expr, err, tc.err)
			continue
		}
		if ok != tc.ok || !slices.Equal(bad, tc.bad) {
			t.Errorf("%q: got %v %q, want %v %q", tc.expr, ok, bad, tc.ok, tc.bad)
		}
	}
}

func TestHasPathPrefix(t *testing.T) {
	for _, tc := range []struct {
		path, prefix string
		want         bool
	}{
		{"golang.org/x/sys", "golang.org/x", true},
		{"golang.org/x/sys", "golang.org/x/", true},
		{"golang.org/x", "golang.org/x", true},
		{"golang.org/xyz", "golang.org/x", false},
		{"github.com/u-root/u-root", "github.com", true},
		{"github.community/x", "github.com", false},
	} {
		if got := hasPathPrefix(tc.path, tc.prefix); got != tc.want {
			t.Errorf("hasPathPrefix(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
		}
	}
}
