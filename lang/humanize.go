package lang

import (
	"regexp"
	"strings"
)

// CUE reports a failed pattern constraint by quoting the pattern. For the
// schema's patterns hephc says what the pattern means.
var patterns = []struct {
	re   *regexp.Regexp
	says string
}{
	{regexp.MustCompile(`\(out of bound =~"\^\[A-Za-z0-9\+_\?=-\]\[A-Za-z0-9\+\._\?=-\]\*\$"\)`),
		"(a store name is 1 to 200 bytes of A-Z a-z 0-9 + . _ ? = -, not starting with '.')"},
	{regexp.MustCompile(`\(out of bound !~"\\\\\.\\\\\."\)`), "(a store name may not contain \"..\")"},
	{regexp.MustCompile(`\(out of bound =~"\^h1:\[A-Za-z0-9\+/\]\{43\}=\$"\)`), "(want an h1: sum as in go.sum: h1: and 44 base64 characters)"},
	{regexp.MustCompile(`\(out of bound =~"\^blake3:\[0-9a-f\]\{64\}\$"\)`), "(want blake3: and 64 lowercase hex digits)"},
}

func humanize(msg string) string {
	for _, p := range patterns {
		msg = p.re.ReplaceAllString(msg, p.says)
	}
	return strings.TrimSpace(msg)
}
