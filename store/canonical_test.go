package store

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestAppendCanonicalJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"null", nil, `null`},
		{"true", true, `true`},
		{"false", false, `false`},
		{"int", 42, `42`},
		{"negative int", -7, `-7`},
		{"int64 max", int64(math.MaxInt64), `9223372036854775807`},
		{"int64 min", int64(math.MinInt64), `-9223372036854775808`},
		{"number", json.Number("12"), `12`},
		{"negative zero number", json.Number("-0"), `0`},
		{"negative number", json.Number("-12"), `-12`},
		{"empty string", "", `""`},
		{"plain string", "hello", `"hello"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"control characters", "\x00\x01\t\n\r\x1f", `"\u0000\u0001\u0009\u000a\u000d\u001f"`},
		{"DEL kept", "\x7f", "\"\x7f\""},
		{"non-ASCII kept as UTF-8", "café ☕ 日本", `"café ☕ 日本"`},
		{"line separators kept", "\u2028\u2029", "\"\u2028\u2029\""},
		{"html kept", "<a>&</a>", `"<a>&</a>"`},
		{"slash kept", "a/b", `"a/b"`},
		{"empty []any", []any{}, `[]`},
		{"nil []any", []any(nil), `[]`},
		{"nil []string", []string(nil), `[]`},
		{"[]string", []string{"a", "b\"", ""}, `["a","b\"",""]`},
		{"[]any", []any{nil, true, 1, "x", []any{}, map[string]any{}}, `[null,true,1,"x",[],{}]`},
		{"empty map", map[string]any{}, `{}`},
		{"nil map", map[string]any(nil), `{}`},
		{
			"keys sorted",
			map[string]any{"b": 1, "a": 2, "B": 3, "": 4, "aa": 5, "a.b": 6},
			`{"":4,"B":3,"a":2,"a.b":6,"aa":5,"b":1}`,
		},
		{
			// é is C3 A9, z is 7A, 日 is E6 97 A5, 😀 is F0 9F 98 80; in
			// UTF-16 😀 (D83D) would sort before ｚ (FF5A); by UTF-8 bytes it
			// sorts after.
			"keys sorted by UTF-8 bytes",
			map[string]any{"é": 1, "z": 2, "日": 3, "😀": 4, "ｚ": 5},
			`{"z":2,"é":1,"日":3,"ｚ":5,"😀":4}`,
		},
		{
			"nested maps sorted",
			map[string]any{"z": map[string]any{"y": 1, "x": []any{map[string]any{"b": 1, "a": 2}}}, "a": nil},
			`{"a":null,"z":{"x":[{"a":2,"b":1}],"y":1}}`,
		},
		{"map[string]string", map[string]string{"b": "1", "a": "\n"}, `{"a":"\u000a","b":"1"}`},
		{"escaped keys", map[string]any{"\"k\\": "v\x02"}, `{"\"k\\":"v\u0002"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendCanonicalJSON(nil, tc.in)
			if err != nil {
				t.Fatalf("AppendCanonicalJSON(%#v): %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("AppendCanonicalJSON(%#v) = %s, want %s", tc.in, got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("AppendCanonicalJSON(%#v) = %s, not valid JSON", tc.in, got)
			}
		})
	}
}

func TestAppendCanonicalJSONAppends(t *testing.T) {
	got, err := AppendCanonicalJSON([]byte("prefix:"), []any{1})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "prefix:[1]" {
		t.Errorf("got %q, want %q", got, "prefix:[1]")
	}
}

func TestAppendCanonicalJSONRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
	}{
		{"invalid UTF-8 string", "a\xffb"},
		{"truncated UTF-8 string", "caf\xc3"},
		{"invalid UTF-8 key", map[string]any{"\xff": 1}},
		{"invalid UTF-8 in []string", []string{"ok", "\xc0\xaf"}},
		{"invalid UTF-8 in map[string]string", map[string]string{"k": "\xff"}},
		{"invalid UTF-8 nested", map[string]any{"a": []any{"\xff"}}},
		{"float", 1.5},
		{"float nested", map[string]any{"a": []any{0.1}}},
		{"NaN", math.NaN()},
		{"+Inf", math.Inf(1)},
		{"-Inf", math.Inf(-1)},
		{"float beyond 2^53", float64(1 << 60)},
		{"float32", float32(1)},
		{"number with fraction", json.Number("1.5")},
		{"number with exponent", json.Number("1e3")},
		{"number written as float", json.Number("1.0")},
		{"number beyond int64", json.Number("9223372036854775808")},
		{"number not a number", json.Number("x")},
		{"uint64", uint64(1)},
		{"struct", struct{}{}},
		{"map[string]int", map[string]int{"a": 1}},
		{"[]int", []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := AppendCanonicalJSON(nil, tc.in); err == nil {
				t.Errorf("AppendCanonicalJSON(%#v) = %s, nil; want an error", tc.in, got)
			}
		})
	}
}

// TestAppendCanonicalJSONIntegralFloat pins today's behaviour: a float64
// that holds an integer below 2^53 is written as that integer, so values
// decoded without UseNumber still encode.
func TestAppendCanonicalJSONIntegralFloat(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{2, "2"},
		{-3, "-3"},
		{math.Copysign(0, -1), "0"},
		{1<<53 - 1, "9007199254740991"},
	} {
		got, err := AppendCanonicalJSON(nil, tc.in)
		if err != nil {
			t.Fatalf("AppendCanonicalJSON(%v): %v", tc.in, err)
		}
		if string(got) != tc.want {
			t.Errorf("AppendCanonicalJSON(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestAppendCanonicalJSONStdlibAgrees checks that encoding/json reads back
// what AppendCanonicalJSON writes.
func TestAppendCanonicalJSONStdlibAgrees(t *testing.T) {
	var in strings.Builder
	for r := rune(0); r < 0x300; r++ {
		in.WriteRune(r)
	}
	s := in.String() + "\u2028\U0001F600"
	b, err := AppendCanonicalJSON(nil, map[string]any{s: s})
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]string
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if got := back[s]; got != s {
		t.Errorf("round trip = %q, want %q", got, s)
	}
}
