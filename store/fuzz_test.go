package store

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// derivationSeeds are hand-written derivations in the JSON form
// ParseDerivation reads.
var derivationSeeds = []string{
	`{}`,
	`{"name":"hello","version":"2.12.1","system":"x86_64-linux","builder":"@{toolchain}/bin/go",` +
		`"args":["build","-o","@{deps.0}/bin/hello"],"env":{"CGO_ENABLED":"0"},` +
		`"inputs":{"toolchain":"` + strings.Repeat("0", 52) + `","deps.0":"` + strings.Repeat("1", 51) + `h"},` +
		`"attrs":{"main":"./cmd/hello","n":3,"neg":-1,"ok":true,"none":null,"tags":["netgo",{"b":1,"a":[]}]}}`,
	`{"name":"src","builder":"builtin:fetch-url","attrs":{"url":"https://example.org/x.tar.gz"},` +
		`"outputHash":"blake3:` + strings.Repeat("ab", 32) + `"}`,
	`{"name":"golang.org-toolchain","outputHash":"h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","type":"fixed-output"}`,
	`{"args":[],"attrs":{},"builder":"","env":{},"inputs":{},"name":"","system":"","type":"derivation","version":""}`,
	`{"name":"esc","args":["\"\\\u0000\u001f\u007f","é☕😀","\u2028"],"env":{"é":"\t"},"attrs":{"\u0001":"\ud83d\ude00"}}`,
	`{"name":"nums","attrs":{"a":-0,"b":9223372036854775807,"c":-9223372036854775808,"d":1.5,"e":1e3}}`,
	`{"name":"ints","attrs":{"a":-0,"b":9223372036854775807,"c":-9223372036854775808,"d":[0,-1]}}`,
	`{"name":"not-fixed","type":"fixed-output","outputHash":""}`,
	`{"name":"dup","name":"dup2","args":null,"env":null,"inputs":null,"attrs":null}`,
	`{"NAME":"case","Attrs":{"x":[[[]]]}}`,
	"{\"name\":\"bad-utf8-\xff\",\"args\":[\"\xc3\"]}",
}

func FuzzCanonical(f *testing.F) {
	for _, s := range derivationSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDerivation(b)
		if err != nil {
			return
		}
		c, err := d.Canonical()
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("Canonical() = %q, not valid JSON", c)
		}
		d2, err := ParseDerivation(c)
		if err != nil {
			t.Fatalf("ParseDerivation(Canonical() = %q): %v", c, err)
		}
		c2, err := d2.Canonical()
		if err != nil {
			t.Fatalf("Canonical() of the reparsed %q: %v", c, err)
		}
		if !bytes.Equal(c2, c) {
			t.Fatalf("Canonical() after a round trip = %q, want %q", c2, c)
		}
		h, err := d.Hash()
		if err != nil {
			// Only a name that is no store name has no hash.
			if CheckName(d.Name) == nil {
				t.Fatalf("Hash(): %v", err)
			}
			if _, err2 := d2.Hash(); err2 == nil {
				t.Fatalf("Hash() of the reparsed succeeded where the original's failed: %v", err)
			}
			return
		}
		h2, err := d2.Hash()
		if err != nil {
			t.Fatalf("Hash() of the reparsed: %v", err)
		}
		if h2 != h {
			t.Fatalf("Hash() after a round trip = %v, want %v", h2, h)
		}
		if d2.IsFixedOutput() != d.IsFixedOutput() {
			t.Fatalf("IsFixedOutput() after a round trip = %v, want %v", d2.IsFixedOutput(), d.IsFixedOutput())
		}
	})
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range derivationSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`null`, `true`, `0`, `-0`, `"s"`, `[]`, `{}`,
		`[1,-2,"\u00e9",{"z":null,"a":[true,false]}]`,
		`{"b":{"d":1,"c":2},"a":"\u0000\\\"","\u00e9":1,"z":1}`,
		`9223372036854775808`, `1.0`, `1e2`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeJSON(b)
		if err != nil {
			return
		}
		c, err := AppendCanonicalJSON(nil, v)
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("AppendCanonicalJSON = %q, not valid JSON", c)
		}
		v2, err := decodeJSON(c)
		if err != nil {
			t.Fatalf("decoding canonical %q: %v", c, err)
		}
		c2, err := AppendCanonicalJSON(nil, v2)
		if err != nil {
			t.Fatalf("AppendCanonicalJSON of the re-decoded %q: %v", c, err)
		}
		if !bytes.Equal(c2, c) {
			t.Fatalf("AppendCanonicalJSON after a round trip = %q, want %q", c2, c)
		}
	})
}
