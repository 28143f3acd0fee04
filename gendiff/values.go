package gendiff

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The values of attrs (and services) are diffed per key and per list
// element, down to the leaves that differ, and each value is given as a
// person reads it: strings quoted as in Go or CUE ("line\n", never
// \u000a), structs and lists in CUE's syntax.

// adder takes one leaf that differs: its old and new values, nil when
// absent.
type adder func(field string, old, new any)

// diffValue adds one change per leaf that differs between x and y (inX,
// inY: whether each is present), at field and below.
func diffValue(field string, x, y any, inX, inY bool, add adder) {
	mx, okX := x.(map[string]any)
	my, okY := y.(map[string]any)
	switch {
	case inX && inY && okX && okY:
		for _, k := range unionKeys(mx, my) {
			a, inA := mx[k]
			b, inB := my[k]
			diffValue(field+selector(k), a, b, inA, inB, add)
		}
		return
	case inX && inY:
		lx, okX := x.([]any)
		ly, okY := y.([]any)
		if okX && okY {
			diffList(field, lx, ly, add)
			return
		}
	}
	if !inX {
		x = nil
	}
	if !inY {
		y = nil
	}
	if inX != inY || formatValue(x) != formatValue(y) {
		add(field, x, y)
	}
}

// diffList adds the elements of a list that were changed, inserted or
// removed, matching the elements the two lists share in order (a longest
// common subsequence), so that inserting one element is one change.
func diffList(field string, a, b []any, add adder) {
	fa, fb := formatAll(a), formatAll(b)
	// lcs[i][j] is the length of the longest common subsequence of
	// fa[i:] and fb[j:].
	lcs := make([][]int, len(fa)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(fb)+1)
	}
	for i := len(fa) - 1; i >= 0; i-- {
		for j := len(fb) - 1; j >= 0; j-- {
			if fa[i] == fb[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	at := func(i int) string { return field + "[" + strconv.Itoa(i) + "]" }
	// Each run of elements outside the common part: removed ones paired
	// with inserted ones in order are changed, the rest removed or added.
	var dels, ins []int
	flush := func() {
		for k := range max(len(dels), len(ins)) {
			switch {
			case k < len(dels) && k < len(ins):
				add(at(ins[k]), a[dels[k]], b[ins[k]])
			case k < len(ins):
				add(at(ins[k]), nil, b[ins[k]])
			default:
				add(at(dels[k]), a[dels[k]], nil)
			}
		}
		dels, ins = dels[:0], ins[:0]
	}
	i, j := 0, 0
	for i < len(fa) || j < len(fb) {
		switch {
		case i < len(fa) && j < len(fb) && fa[i] == fb[j]:
			flush()
			i, j = i+1, j+1
		case j < len(fb) && (i == len(fa) || lcs[i][j+1] >= lcs[i+1][j]):
			ins = append(ins, j)
			j++
		default:
			dels = append(dels, i)
			i++
		}
	}
	flush()
}

func formatAll(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = formatValue(v)
	}
	return out
}

func toAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// selector is .k, or ."k" when k is not an identifier (a CUE path either
// way).
func selector(k string) string {
	if identRE.MatchString(k) {
		return "." + k
	}
	return "." + strconv.Quote(k)
}

// formatValue writes v (a value of attrs, as JSON decodes it) as CUE
// would: strings quoted with Go's escapes, struct fields sorted.
func formatValue(v any) string {
	var b strings.Builder
	writeValue(&b, v)
	return b.String()
}

func writeValue(b *strings.Builder, v any) {
	switch v := v.(type) {
	case string:
		b.WriteString(strconv.Quote(v))
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strings.TrimPrefix(selector(k), "."))
			b.WriteString(": ")
			writeValue(b, v[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			writeValue(b, x)
		}
		b.WriteByte(']')
	case []string:
		writeValue(b, toAny(v))
	case map[string]string:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = x
		}
		writeValue(b, m)
	default:
		if j, err := json.Marshal(v); err == nil {
			b.Write(j)
		} else {
			fmt.Fprint(b, v)
		}
	}
}

// unionKeys returns the keys of a and b, sorted, each once.
func unionKeys[V any](a, b map[string]V) []string {
	return slices.Compact(slices.Sorted(union(a, b)))
}

// union yields the keys of a, then those of b (a key of both twice).
func union[K comparable, V any](a, b map[K]V) iter.Seq[K] {
	return func(yield func(K) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if !yield(k) {
				return
			}
		}
	}
}
