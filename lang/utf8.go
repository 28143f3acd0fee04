package lang

import (
	"fmt"
	"os"
	"unicode/utf8"

	"cuelang.org/go/cue/build"

	"hephc.dev/hephc/defs"
	"hephc.dev/hephc/srcpos"
)

// checkUTF8 refuses source files that are not UTF-8, which CUE's
// specification requires but its loader does not check: a stray byte
// would otherwise become U+FFFD in a hashed field, and a UTF-16 file may
// evaluate to nothing at all. Each bad file is reported at its first
// invalid byte.
//
// named are the files the user named (or, when none, the .cue files of
// the configuration's directory): a file CUE cannot even read a package
// clause from is in no list of the instance.
func (l *Loader) checkUTF8(inst *build.Instance, named []string) Diagnostics {
	var ds Diagnostics
	seen := make(map[string]bool)
	check := func(name string) {
		if seen[name] || defs.IsSchemaFile(name) {
			return
		}
		seen[name] = true
		b, err := os.ReadFile(name)
		if err != nil {
			return // not on disk (an overlay); the loader reports what it cannot read
		}
		if pos, bad, ok := firstInvalidUTF8(b); ok {
			ds = append(ds, Diagnostic{
				Pos: srcpos.Pos{File: srcpos.RelPath(l.Cwd, name), Line: pos.Line, Col: pos.Col},
				Msg: fmt.Sprintf("byte 0x%02x is not valid UTF-8: CUE source files must be UTF-8 (a file saved as UTF-16 or Latin-1 must be converted)", bad),
			})
		}
	}
	for _, name := range named {
		check(name)
	}
	var walk func(*build.Instance)
	walk = func(in *build.Instance) {
		for _, fs := range [][]*build.File{in.BuildFiles, in.InvalidFiles, in.OrphanedFiles} {
			for _, f := range fs {
				check(f.Filename)
			}
		}
		for _, imp := range in.Imports {
			walk(imp)
		}
	}
	walk(inst)
	return ds.Sort()
}

// firstInvalidUTF8 returns the line and byte column (1-based, as CUE
// counts them) of the first byte of b that is not valid UTF-8, and that
// byte.
func firstInvalidUTF8(b []byte) (pos srcpos.Pos, bad byte, found bool) {
	line, col := 1, 1
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return srcpos.Pos{Line: line, Col: col}, b[i], true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col += size
		}
		i += size
	}
	return srcpos.Pos{}, 0, false
}
