package eval

import (
	"cuelang.org/go/cue"

	"hephc.dev/hephc/store"
)

// derivedAttrs says, for each built-in builder the schema has a definition
// for, which attrs it reads and the field of the definition each is made
// from (#Initramfs: attrs.services is services). The builder reads attrs;
// people and policies read the fields. A configuration that wrote attrs
// of its own (attrs: services: telnetd: …) would build what no policy
// sees, so the two must agree.
var derivedAttrs = map[string][]struct{ attr, field string }{
	"builtin:fetch-gomod":     {{"module", "path"}, {"version", "version"}},
	"builtin:fetch-file":      {{"file", "file"}},
	"builtin:go-build":        {{"packages", "packages"}, {"ldflags", "ldflags"}},
	"builtin:uroot-busybox":   {{"commands", "commands"}},
	"builtin:uroot":           {{"files", "files"}, {"services", "services"}},
	"builtin:system-toplevel": {{"cmdline", "cmdline"}, {"kernelFile", "kernelFile"}},
}

// checkDerivedAttrs reports attrs of d (the derivation v at attr) that do
// not come from their fields.
func (w *walker) checkDerivedAttrs(v cue.Value, attr string, d *store.Derivation) bool {
	ok := true
	for _, da := range derivedAttrs[d.Builder] {
		got, set := d.Attrs[da.attr]
		f := v.LookupPath(cue.MakePath(cue.Str(da.field)))
		if !f.Exists() {
			if set {
				w.fail(errorf(v.LookupPath(cue.MakePath(cue.Str("attrs"), cue.Str(da.attr))), attr+".attrs."+da.attr,
					"attrs.%s without %s: %s builds from attrs.%s, which the schema makes from %s; write %s, not attrs.%s", da.attr, da.field, d.Builder, da.attr, da.field, da.field, da.attr))
				ok = false
			}
			continue
		}
		want, good := w.data(f, attr+"."+da.field)
		if !good {
			ok = false
			continue
		}
		a, _ := store.AppendCanonicalJSON(nil, got)
		b, _ := store.AppendCanonicalJSON(nil, want)
		if !set || string(a) != string(b) {
			w.fail(errorf(v.LookupPath(cue.MakePath(cue.Str("attrs"), cue.Str(da.attr))), attr+".attrs."+da.attr,
				"attrs.%s differs from %s: %s builds from attrs.%s, which the schema makes from %s; write %s, not attrs.%s", da.attr, da.field, d.Builder, da.attr, da.field, da.field, da.attr))
			ok = false
		}
	}
	return ok
}
