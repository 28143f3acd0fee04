package realize_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"hephc.dev/hephc/internal/storetest"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

// admissionFunc admits what f says.
type admissionFunc func(c *realize.Candidate) error

func (f admissionFunc) Admit(_ context.Context, c *realize.Candidate) error { return f(c) }

// TestSubstituteAdmission: every path copied from another store goes
// through the Admission, which sees the content hashed; a refusal
// registers nothing.
func TestSubstituteAdmission(t *testing.T) {
	f, pa, pb, dst := substituteFixture(t)
	var seen []*realize.Candidate
	refuseB := admissionFunc(func(c *realize.Candidate) error {
		seen = append(seen, c)
		if _, err := os.Lstat(c.Dir); err != nil {
			t.Errorf("the candidate's content is not in place: %v", err)
		}
		if c.Source == nil || c.Attr != "" || c.Pinned {
			t.Errorf("candidate %+v: want its source, no attribute, not pinned", c)
		}
		if c.Info.Path == pb {
			return errors.New("b is not signed")
		}
		return nil
	})
	got, err := realize.Substitute(context.Background(), dst, f.St, refuseB, pb)
	var na *realize.NotAdmittedError
	if !errors.As(err, &na) || na.Path != pb || !strings.Contains(err.Error(), "b is not signed") {
		t.Fatalf("got %v, want b not admitted", err)
	}
	if !slices.Equal(got, []store.Path{pa}) || len(seen) != 2 || seen[0].Info.ContentHash.String() == "" {
		t.Fatalf("substituted %v after %d admissions, want a only, both asked", got, len(seen))
	}
	if v := storetest.Valid(t, dst, pa, pb); !v[pa] || v[pb] {
		t.Fatalf("valid: %v, want a and not b", v)
	}
}

// TestRealizeBuildsWhatIsNotAdmitted: Options.Substitutes go through the
// Admission too, with the attribute the graph writes each path at; a
// path it refuses is built instead.
func TestRealizeBuildsWhatIsNotAdmitted(t *testing.T) {
	f, pa, pb, _ := substituteFixture(t)
	other := storetest.New(t, t.TempDir())
	attrs := map[store.Path]string{}
	adm := admissionFunc(func(c *realize.Candidate) error {
		attrs[c.Info.Path] = c.Attr
		if c.Info.Path == pa {
			return errors.New("a is not signed")
		}
		return nil
	})
	res, err := realize.Realize(context.Background(), other.St, f.G, []store.DrvHash{pb.Hash}, realize.Options{Substitutes: []realize.Source{f.St}, Admission: adm})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Built, []store.Path{pa}) || !slices.Equal(res.Substituted, []store.Path{pb}) {
		t.Fatalf("built %v, substituted %v; want a built, b substituted", res.Built, res.Substituted)
	}
	if attrs[pa] != "pkgs.a" || attrs[pb] != "pkgs.b" {
		t.Errorf("got attributes %v, want each path's", attrs)
	}
	if err := storetest.VerifyPath(other.St, pb); err != nil {
		t.Error(err)
	}
}
