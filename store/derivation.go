package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"hephc.dev/hephc/builtins"
)

// Derivation is one pure build step as the store sees it. Its identity is
// the blake3-256 hash of its canonical encoding (see Canonical).
type Derivation struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	System  string `json:"system"`
	// Builder is builtin:NAME or a path inside an input, @{input}/bin/x.
	Builder string            `json:"builder"`
	Args    []string          `json:"args"`
	Env     map[string]string `json:"env"`
	// Inputs maps an input's name to the derivation it refers to. A list
	// input "deps" appears as deps.0, deps.1, …; a struct input "bin" as
	// bin.<key>.
	Inputs map[string]DrvHash `json:"inputs"`
	// Attrs are structured arguments for built-in builders.
	Attrs map[string]any `json:"attrs"`
	// OutputHash, when set, makes this a fixed-output derivation (FOD):
	// h1:… (a Go module's dirhash) or blake3:… (the canonical tree hash).
	OutputHash string `json:"outputHash,omitempty"`
}

// IsFixedOutput reports whether d is a fixed-output derivation.
func (d *Derivation) IsFixedOutput() bool { return d.OutputHash != "" }

// Canonical returns the canonical encoding that d's hash is computed over.
//
// A fixed-output derivation is encoded as
//
//	{"name":N,"outputHash":H,"type":"fixed-output"}
//
// so its path depends on its name and pinned hash only: a different mirror,
// URL or fetcher does not change it, nor anything downstream. Any other
// derivation is encoded as
//
//	{"args":[…],"attrs":{…},"builder":B,"env":{…},"inputs":{NAME:HASH,…},
//	 "name":N,"system":S,"type":"derivation","version":V}
//
// with every field present, in the canonical JSON of AppendCanonicalJSON,
// inputs replaced by their derivation hashes.
func (d *Derivation) Canonical() ([]byte, error) {
	if d.IsFixedOutput() {
		return AppendCanonicalJSON(nil, map[string]any{
			"type":       "fixed-output",
			"name":       d.Name,
			"outputHash": d.OutputHash,
		})
	}
	inputs := make(map[string]any, len(d.Inputs))
	for k, h := range d.Inputs {
		inputs[k] = h.String()
	}
	args := d.Args
	if args == nil {
		args = []string{}
	}
	env := d.Env
	if env == nil {
		env = map[string]string{}
	}
	attrs := d.Attrs
	if attrs == nil {
		attrs = map[string]any{}
	}
	return AppendCanonicalJSON(nil, map[string]any{
		"type":    "derivation",
		"name":    d.Name,
		"version": d.Version,
		"system":  d.System,
		"builder": d.Builder,
		"args":    args,
		"env":     env,
		"inputs":  inputs,
		"attrs":   attrs,
	})
}

// Hash returns the hash of d's canonical encoding. A derivation whose name
// is not a store name has none.
func (d *Derivation) Hash() (DrvHash, error) {
	if err := CheckName(d.Name); err != nil {
		return DrvHash{}, fmt.Errorf("hashing derivation: %w", err)
	}
	c, err := d.Canonical()
	if err != nil {
		return DrvHash{}, fmt.Errorf("hashing derivation %s: %w", d.Name, err)
	}
	return HashDerivation(c), nil
}

// Path returns d's store path.
func (d *Derivation) Path() (Path, error) {
	h, err := d.Hash()
	if err != nil {
		return Path{}, err
	}
	return Path{Hash: h, Name: d.Name}, nil
}

var (
	placeholderRE = regexp.MustCompile(`@\{([^}]*)\}`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	builtinRE     = regexp.MustCompile(`^` + regexp.QuoteMeta(builtins.Prefix) + `[a-z][a-z0-9-]*$`)
	h1RE          = regexp.MustCompile(`^h1:[A-Za-z0-9+/]{43}=$`)
	blake3RE      = regexp.MustCompile(`^blake3:[0-9a-f]{64}$`)
	inputNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_.+?=-]+)?$`)
)

// Placeholders returns the input names that s refers to as @{name}.
func Placeholders(s string) []string {
	var names []string
	for _, m := range placeholderRE.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1])
	}
	return names
}

// FieldError is a problem with one field of a derivation.
type FieldError struct {
	// Path leads to the field: names, and list indices in decimal, e.g.
	// ["args", "1"] or ["env", "HOME"].
	Path []string
	Msg  string
}

func (e *FieldError) Error() string { return FormatFieldPath(e.Path) + ": " + e.Msg }

// FormatFieldPath writes a field path as args[1], env.HOME, attrs.x[0].
func FormatFieldPath(path []string) string {
	var b strings.Builder
	for i, p := range path {
		if i > 0 && p != "" && strings.Trim(p, "0123456789") == "" {
			fmt.Fprintf(&b, "[%s]", p)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func fieldErr(path []string, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks what the schema cannot: that every @{name} names an
// input, that strings hold no NUL, that names are store names. Problems are
// *FieldError values, in a stable order.
func (d *Derivation) Validate() []error {
	var errs []error
	if err := CheckName(d.Name); err != nil {
		errs = append(errs, &FieldError{Path: []string{"name"}, Msg: err.Error()})
	}
	if !builtinRE.MatchString(d.Builder) && !strings.HasPrefix(d.Builder, "@{") {
		errs = append(errs, fieldErr([]string{"builder"}, "%q: want %sNAME or @{input}/path", d.Builder, builtins.Prefix))
	}
	check := func(path []string, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			errs = append(errs, fieldErr(path, "contains a NUL byte"))
		}
		for _, n := range Placeholders(s) {
			if _, ok := d.Inputs[n]; ok {
				continue
			}
			if len(d.Inputs) == 0 {
				errs = append(errs, fieldErr(path, "@{%s} names no input (%s has no inputs)", n, d.Name))
			} else {
				errs = append(errs, fieldErr(path, "@{%s} names no input (inputs: %s)", n, strings.Join(d.InputNames(), ", ")))
			}
		}
	}
	if strings.HasPrefix(d.Builder, "@{") && slices.Contains(strings.Split(d.Builder, "/"), "..") {
		errs = append(errs, fieldErr([]string{"builder"}, "%q: may not leave its input with ..", d.Builder))
	}
	if d.OutputHash != "" && !h1RE.MatchString(d.OutputHash) && !blake3RE.MatchString(d.OutputHash) {
		errs = append(errs, fieldErr([]string{"outputHash"}, "%q: want h1:<44 base64 characters> or blake3:<64 hex digits>", d.OutputHash))
	}
	check([]string{"builder"}, d.Builder)
	check([]string{"version"}, d.Version)
	check([]string{"system"}, d.System)
	for i, a := range d.Args {
		check([]string{"args", strconv.Itoa(i)}, a)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Env)) {
		if !envNameRE.MatchString(k) {
			errs = append(errs, fieldErr([]string{"env", k}, "%q is not a variable name", k))
		}
		check([]string{"env", k}, d.Env[k])
	}
	checkData([]string{"attrs"}, d.Attrs, check)
	for _, k := range d.InputNames() {
		if !inputNameRE.MatchString(k) {
			errs = append(errs, fieldErr([]string{"inputs", k}, "%q is not an input name", k))
		}
	}
	return errs
}

// checkData applies check to every string (and key) in attrs data, in a
// stable order.
func checkData(path []string, v any, check func(path []string, s string)) {
	sub := func(elem string) []string { return append(slices.Clip(path), elem) }
	switch x := v.(type) {
	case string:
		check(path, x)
	case []any:
		for i, e := range x {
			checkData(sub(strconv.Itoa(i)), e, check)
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			check(sub(k), k)
			checkData(sub(k), x[k], check)
		}
	}
}

// InputNames returns the names of d's inputs, sorted.
func (d *Derivation) InputNames() []string { return slices.Sorted(maps.Keys(d.Inputs)) }

// ParseDerivation decodes the JSON form of a derivation (as Canonical or
// encoding/json writes it). Numbers in attrs stay json.Number. Keys match
// as encoding/json matches them (case-insensitively).
func ParseDerivation(b []byte) (*Derivation, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var d struct {
		Derivation
		Type string `json:"type"`
	}
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("parsing derivation: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("parsing derivation: data after the object")
	}
	switch d.Type {
	case "", "derivation", "fixed-output":
	default:
		return nil, fmt.Errorf("parsing derivation: unknown type %q", d.Type)
	}
	if d.Type == "fixed-output" && d.OutputHash == "" {
		return nil, fmt.Errorf("parsing derivation: fixed-output without outputHash")
	}
	for name, h := range d.Inputs {
		if h == (DrvHash{}) {
			return nil, fmt.Errorf("parsing derivation: input %q has no hash", name)
		}
	}
	return &d.Derivation, nil
}
