package policy

import (
	"fmt"

	"hephc.dev/hephc/srcpos"
	"hephc.dev/hephc/store"
)

// SizeLimit is a rule that can be checked only once an image is built:
// the size of its runtime closure.
type SizeLimit struct {
	Image store.Path `json:"image"`
	Attr  string     `json:"attr"`
	Max   int64      `json:"max"`
	Rule  string     `json:"rule"`
	// Policy is where the policy says it, System where the image is.
	Policy srcpos.Pos `json:"policy"`
	System srcpos.Pos `json:"system"`
	// Tests makes this the tests rule instead (tests.go): every test of
	// Image's closure must have passed; Max is unused.
	Tests bool `json:"tests,omitempty"`
}

// ClosureSize returns the size in bytes of a store path's runtime closure,
// and whether the path is built at all.
type ClosureSize func(store.Path) (size int64, built bool, err error)

// CheckSizes checks the limits of the images that are built, and says
// how many it could not check because their image is not built.
func CheckSizes(limits []SizeLimit, size ClosureSize) (Violations, int, error) {
	var vs Violations
	unbuilt := 0
	for _, l := range limits {
		if l.Tests {
			continue // CheckTests
		}
		n, built, err := size(l.Image)
		if err != nil {
			return nil, 0, err
		}
		if !built {
			unbuilt++
		}
		if built && n > l.Max {
			vs = append(vs, Violation{
				Rule: l.Rule, Attr: l.Attr, Policy: l.Policy, System: l.System,
				Text: fmt.Sprintf("the closure of image %s is %s (%d bytes), more than %d bytes", l.Image.Name, store.FormatSize(n), n, l.Max),
			})
		}
	}
	if vs == nil {
		return nil, unbuilt, nil
	}
	return vs.sorted(), unbuilt, nil
}
