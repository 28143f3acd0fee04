package lang

import (
	"fmt"
	"regexp"
	"strings"
)

// CUE reports a failed constraint by quoting it. For the schema's patterns
// hephc says what the pattern means; both of #Name's constraints say the
// same, so one bad name is one diagnostic.
var constraintMeaning = []struct{ cue, says string }{
	{`(out of bound =~"^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,199}$")`, nameRule},
	{`(out of bound !~"\\.\\.")`, nameRule},
	{`(out of bound =~"^h1:[A-Za-z0-9+/]{43}=$")`, "(want an h1: sum as go.sum has it: h1: and 44 base64 characters)"},
	{`(out of bound =~"^blake3:[0-9a-f]{64}$")`, "(want blake3: and 64 lowercase hex digits)"},
	{`(out of bound =~"^(h1:[A-Za-z0-9+/]{43}=|blake3:[0-9a-f]{64})$")`, "(want h1: and 44 base64 characters, or blake3: and 64 lowercase hex digits)"},
	{`(out of bound =~"^[A-Za-z_][A-Za-z0-9_]*$")`, "(want an identifier: a letter or _, then letters, digits or _)"},
	{`(out of bound =~"^(builtin:[a-z][a-z0-9-]*|@\\{[A-Za-z_][A-Za-z0-9_.]*\\}(/.+)?)$")`, builderRule},
	{`(out of bound =~"^[^/]")`, "(want a relative path)"},
	{`(out of bound !~"(^|/)\\.\\.(/|$)")`, "(a path may not leave its directory with ..)"},
	{`(out of bound =~"^/")`, "(want an absolute path)"},
	{`(out of bound =~"^[^:]*:[0-9]{1,5}$")`, "(want HOST:PORT, e.g. 0.0.0.0:8080 or :8080)"},
	{`(out of bound =~"^[(]*[A-Za-z0-9][A-Za-z0-9.+-]*[)]*( (AND|OR|WITH) [(]*[A-Za-z0-9][A-Za-z0-9.+-]*[)]*)*$")`, "(want an SPDX license expression, e.g. MIT or GPL-2.0-only AND BSD-3-Clause)"},
	{`(out of bound =~"^[A-Za-z0-9][A-Za-z0-9.+-]*$")`, "(want an SPDX license identifier, e.g. MIT or Apache-2.0)"},
	{`(out of bound =~"^v[0-9]")`, "(want a module version: v and a semantic version)"},
}

const (
	nameRule    = "(a store name is 1 to 200 bytes of A-Z a-z 0-9 + . _ ? = -, not starting with '.' and without '..')"
	builderRule = "(want builtin:NAME, @{input} or @{input}/path/in/it)"
)

// What an incomplete value wants, by the constraint CUE prints.
var incompleteMeaning = []struct{ cue, says string }{
	{`=~"^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,199}$" & !~"\\.\\."`, "a store name"},
	{`=~"^h1:[A-Za-z0-9+/]{43}=$"`, "an h1: sum as go.sum has it"},
	{`=~"^blake3:[0-9a-f]{64}$"`, "a blake3: hash"},
	{`=~"^(builtin:[a-z][a-z0-9-]*|@\\{[A-Za-z_][A-Za-z0-9_.]*\\}(/.+)?)$"`, "builtin:NAME or @{input}/path"},
}

// longString matches a quoted CUE string of more than 60 characters.
var longString = regexp.MustCompile(`"(?:[^"\\]|\\.){61,}"`)

func humanize(msg string) string {
	for _, c := range constraintMeaning {
		msg = strings.ReplaceAll(msg, c.cue, c.says)
	}
	if rest, ok := strings.CutPrefix(msg, "incomplete value "); ok {
		for _, c := range incompleteMeaning {
			if rest == c.cue {
				rest = c.says
			}
		}
		if len(rest) > 80 {
			// A whole struct or disjunction, evaluated: its start says
			// enough.
			rest = strings.ToValidUTF8(rest[:60], "") + "…"
		}
		msg = "no value given (want " + rest + ")"
	}
	if msg == "field not allowed" {
		msg = "field not allowed by the schema"
	}
	msg = longString.ReplaceAllStringFunc(msg, func(q string) string {
		return fmt.Sprintf("%s…\" (%d bytes)", q[:41], len(q)-2)
	})
	return strings.TrimSpace(msg)
}
