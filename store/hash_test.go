package store

import (
	"encoding/json"
	"strings"
	"testing"
)

// sampleDrvHash returns a hash whose bytes are all distinct, so a
// byte-order or truncation mistake shows.
func sampleDrvHash() DrvHash {
	var h DrvHash
	for i := range h {
		h[i] = byte(i*37 + 11)
	}
	return h
}

func sampleOutputHash() OutputHash { return OutputHash(sampleDrvHash()) }

func TestDrvHashRoundTrip(t *testing.T) {
	var ones DrvHash
	for i := range ones {
		ones[i] = 0xff
	}
	for _, h := range []DrvHash{{}, ones, sampleDrvHash(), HashDerivation([]byte("x"))} {
		s := h.String()
		if len(s) != HashStringLen {
			t.Errorf("len(%q) = %d, want %d", s, len(s), HashStringLen)
		}
		got, err := ParseDrvHash(s)
		if err != nil {
			t.Fatalf("ParseDrvHash(%q): %v", s, err)
		}
		if got != h {
			t.Errorf("ParseDrvHash(%q) = %x, want %x", s, got, h)
		}

		text, err := h.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText: %v", err)
		}
		if string(text) != s {
			t.Errorf("MarshalText = %q, want %q", text, s)
		}
		var back DrvHash
		if err := back.UnmarshalText(text); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", text, err)
		}
		if back != h {
			t.Errorf("UnmarshalText(%q) = %x, want %x", text, back, h)
		}
	}
}

func TestDrvHashStringForm(t *testing.T) {
	if HashStringLen != 52 {
		t.Errorf("HashStringLen = %d, want 52", HashStringLen)
	}
	// Computed independently: RFC 4648 base32 of the bytes, with
	// A-Z2-7 mapped onto 0-9a-df-np-sv-z and the padding dropped.
	if got, want := sampleDrvHash().String(), "1cq5aylzqklhwcsqgnicgv0i6rdq19faxwa3jpl3m36z45rwc630"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (DrvHash{}).String(), strings.Repeat("0", 52); got != want {
		t.Errorf("zero hash = %q, want %q", got, want)
	}
	// The alphabet leaves out e, o, u and t.
	var all strings.Builder
	for i := 0; i < 256; i++ {
		var h DrvHash
		for j := range h {
			h[j] = byte(i + j)
		}
		all.WriteString(h.String())
	}
	for _, c := range "eout" {
		if strings.ContainsRune(all.String(), c) {
			t.Errorf("hash strings contain %q, want it left out of the alphabet", c)
		}
	}
}

func TestDrvHashJSON(t *testing.T) {
	h := sampleDrvHash()
	type doc struct {
		H DrvHash         `json:"h"`
		M map[DrvHash]int `json:"m"`
	}
	in := doc{H: h, M: map[DrvHash]int{h: 1, {}: 2}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	if !strings.Contains(string(b), `"h":"`+h.String()+`"`) {
		t.Errorf("json.Marshal = %s, want it to hold %q as a string", b, h.String())
	}
	if !strings.Contains(string(b), `"`+h.String()+`":1`) {
		t.Errorf("json.Marshal = %s, want %q as a map key", b, h.String())
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if out.H != h {
		t.Errorf("round trip H = %v, want %v", out.H, h)
	}
	if len(out.M) != 2 || out.M[h] != 1 || out.M[DrvHash{}] != 2 {
		t.Errorf("round trip M = %v, want %v", out.M, in.M)
	}
}

func TestParseDrvHashRejects(t *testing.T) {
	good := sampleDrvHash().String()
	// 256 bits fill 51 characters and one bit of the 52nd; the 52nd
	// character of a canonical string is '0' or 'h' (0 or 16).
	last := good[len(good)-1]
	var nonCanonical string
	for _, c := range "123456789abcdfg" {
		if byte(c) != last {
			nonCanonical = good[:len(good)-1] + string(c)
			break
		}
	}
	for _, s := range []string{
		"",
		good[:51],
		good + "0",
		strings.ToUpper(good),
		good[:10] + "e" + good[11:], // not in the alphabet
		good[:10] + "-" + good[11:],
		good[:10] + "\n" + good[11:], // base32 decoders skip newlines
		nonCanonical,
		"blake3:" + good,
	} {
		if h, err := ParseDrvHash(s); err == nil {
			t.Errorf("ParseDrvHash(%q) = %v, nil; want an error", s, h)
		}
		var h DrvHash
		if err := h.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("UnmarshalText(%q) succeeded, want an error", s)
		}
	}
	if err := json.Unmarshal([]byte(`{"`+strings.ToUpper(good)+`":1}`), new(map[DrvHash]int)); err == nil {
		t.Errorf("json.Unmarshal of an uppercase map key succeeded, want an error")
	}
}

func TestOutputHashRoundTrip(t *testing.T) {
	for _, h := range []OutputHash{{}, sampleOutputHash()} {
		s := h.String()
		if !strings.HasPrefix(s, "blake3:") || len(s) != len("blake3:")+64 {
			t.Errorf("String() = %q, want blake3: and 64 hex digits", s)
		}
		got, err := ParseOutputHash(s)
		if err != nil {
			t.Fatalf("ParseOutputHash(%q): %v", s, err)
		}
		if got != h {
			t.Errorf("ParseOutputHash(%q) = %v, want %v", s, got, h)
		}
		text, err := h.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText: %v", err)
		}
		var back OutputHash
		if err := back.UnmarshalText(text); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", text, err)
		}
		if back != h {
			t.Errorf("UnmarshalText(%q) = %v, want %v", text, back, h)
		}
	}
	if got, want := sampleOutputHash().String(), "blake3:0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestOutputHashJSON(t *testing.T) {
	h := sampleOutputHash()
	in := map[OutputHash]OutputHash{h: {}, {}: h}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	var out map[OutputHash]OutputHash
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	if len(out) != 2 || out[h] != (OutputHash{}) || out[OutputHash{}] != h {
		t.Errorf("round trip = %v, want %v", out, in)
	}
	if !strings.Contains(string(b), `"`+h.String()+`":"blake3:`) {
		t.Errorf("json.Marshal = %s, want %q as a key and blake3: values", b, h.String())
	}
}

func TestParseOutputHashRejects(t *testing.T) {
	good := sampleOutputHash().String()
	hexPart := strings.TrimPrefix(good, "blake3:")
	for _, s := range []string{
		"",
		"blake3:",
		hexPart,             // no prefix
		"sha256:" + hexPart, // wrong algorithm
		"BLAKE3:" + hexPart, // prefix is lowercase
		"blake3:" + strings.ToUpper(hexPart),
		"blake3:" + hexPart[:63],
		"blake3:" + hexPart + "0",
		"blake3:" + hexPart[:62],
		"blake3:" + hexPart[:63] + "g",
		"blake3:" + sampleDrvHash().String(), // base32, not hex
		" " + good,
	} {
		if h, err := ParseOutputHash(s); err == nil {
			t.Errorf("ParseOutputHash(%q) = %v, nil; want an error", s, h)
		}
		var h OutputHash
		if err := h.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("UnmarshalText(%q) succeeded, want an error", s)
		}
	}
}

func TestHashDerivation(t *testing.T) {
	// blake3-256 of the empty input, from the BLAKE3 test vectors.
	const want = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	got := HashDerivation(nil)
	if got := OutputHash(got).String(); got != "blake3:"+want {
		t.Errorf("HashDerivation(nil) = %s, want blake3:%s", got, want)
	}
	if HashDerivation([]byte("a")) == HashDerivation([]byte("b")) {
		t.Errorf("HashDerivation(a) == HashDerivation(b), want different")
	}
}
