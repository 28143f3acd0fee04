package lang

import "strings"

// CUE reports a failed constraint by quoting it. For the schema's patterns
// hephc says what the pattern means; both of #Name's constraints say the
// same, so one bad name is one diagnostic.
var constraintMeaning = []struct{ cue, says string }{
	{`(out of bound =~"^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,199}$")`, nameRule},
	{`(out of bound !~"\\.\\.")`, nameRule},
	{`(out of bound =~"^h1:[A-Za-z0-9+/]{43}=$")`, "(want an h1: sum as go.sum has it: h1: and 44 base64 characters)"},
	{`(out of bound =~"^blake3:[0-9a-f]{64}$")`, "(want blake3: and 64 lowercase hex digits)"},
	{`(out of bound =~"^[A-Za-z_][A-Za-z0-9_]*$")`, "(want an identifier: a letter or _, then letters, digits or _)"},
	{`(out of bound =~"^(builtin:[a-z][a-z0-9-]*|@\\{[A-Za-z_][A-Za-z0-9_.]*\\}/.+)$")`, "(want builtin:NAME or @{input}/path/in/it)"},
	{`=~"^[A-Za-z0-9+_?=-][A-Za-z0-9+._?=-]{0,199}$" & !~"\\.\\."`, "#Name"},
}

const nameRule = "(a store name is 1 to 200 bytes of A-Z a-z 0-9 + . _ ? = -, not starting with '.' and without '..')"

func humanize(msg string) string {
	for _, c := range constraintMeaning {
		msg = strings.ReplaceAll(msg, c.cue, c.says)
	}
	if rest, ok := strings.CutPrefix(msg, "incomplete value "); ok {
		msg = "no value given (want " + rest + ")"
	}
	return strings.TrimSpace(msg)
}
