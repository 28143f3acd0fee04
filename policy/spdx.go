package policy

import (
	"fmt"
	"strings"
)

// licenseAllowed evaluates an SPDX license expression against the allowed
// identifiers (matched without regard to case, as SPDX says): A OR B needs
// one side allowed, A AND B both, A WITH EXCEPTION needs A. It returns the
// identifiers that make the expression fail.
func licenseAllowed(expr string, allowed map[string]bool) (ok bool, bad []string, err error) {
	p := &spdxParser{toks: spdxTokens(expr), allowed: allowed}
	ok, bad = p.or()
	if p.err == nil && p.i < len(p.toks) {
		p.err = fmt.Errorf("unexpected %q", p.toks[p.i])
	}
	if p.err != nil {
		return false, nil, fmt.Errorf("license %q: %w", expr, p.err)
	}
	return ok, bad, nil
}

func spdxTokens(s string) []string {
	s = strings.ReplaceAll(s, "(", " ( ")
	s = strings.ReplaceAll(s, ")", " ) ")
	return strings.Fields(s)
}

type spdxParser struct {
	toks    []string
	i       int
	allowed map[string]bool
	err     error
}

func (p *spdxParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *spdxParser) or() (bool, []string) {
	ok, bad := p.and()
	for p.peek() == "OR" {
		p.i++
		ok2, bad2 := p.and()
		if ok || ok2 {
			ok, bad = true, nil
		} else {
			bad = append(bad, bad2...)
		}
	}
	return ok, bad
}

func (p *spdxParser) and() (bool, []string) {
	ok, bad := p.with()
	for p.peek() == "AND" {
		p.i++
		ok2, bad2 := p.with()
		ok = ok && ok2
		bad = append(bad, bad2...)
	}
	return ok, bad
}

func (p *spdxParser) with() (bool, []string) {
	ok, bad := p.atom()
	if p.peek() == "WITH" {
		p.i++
		if t := p.peek(); t == "" || t == "(" || t == ")" {
			p.fail("an exception after WITH")
		}
		p.i++
	}
	return ok, bad
}

func (p *spdxParser) atom() (bool, []string) {
	t := p.peek()
	switch t {
	case "":
		p.fail("a license identifier")
		return false, nil
	case "(":
		p.i++
		ok, bad := p.or()
		if p.peek() != ")" {
			p.fail(`")"`)
		}
		p.i++
		return ok, bad
	case ")", "AND", "OR", "WITH":
		p.fail("a license identifier")
		p.i++
		return false, nil
	}
	p.i++
	if p.allowed[strings.ToLower(t)] {
		return true, nil
	}
	return false, []string{t}
}

func (p *spdxParser) fail(want string) {
	if p.err != nil {
		return
	}
	got := "the end"
	if t := p.peek(); t != "" {
		got = fmt.Sprintf("%q", t)
	}
	p.err = fmt.Errorf("want %s, found %s", want, got)
}
