package eval

import (
	"cuelang.org/go/cue"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
)

// checkDerivedAttrs reports attrs of d (the derivation v at attr) that do
// not come from their fields. A built-in builder reads attrs that the
// schema makes from fields of its definition (#Initramfs: attrs.services
// is services; builtins.All says which). The builder reads attrs; people
// and policies read the fields. A configuration that wrote attrs of its
// own (attrs: services: telnetd: …) would build what no policy sees, so
// the two must agree.
func (w *walker) checkDerivedAttrs(v cue.Value, attr string, d *store.Derivation) bool {
	ok := true
	builder, _ := builtins.Lookup(d.Builder)
	for _, da := range builder.Derived {
		got, set := d.Attrs[da.Attr]
		f := v.LookupPath(cue.MakePath(cue.Str(da.Field)))
		if !f.Exists() {
			if set {
				w.fail(errorf(v.LookupPath(cue.MakePath(cue.Str("attrs"), cue.Str(da.Attr))), attr+".attrs."+da.Attr,
					"attrs.%s without %s: %s builds from attrs.%s, which the schema makes from %s; write %s, not attrs.%s", da.Attr, da.Field, d.Builder, da.Attr, da.Field, da.Field, da.Attr))
				ok = false
			}
			continue
		}
		want, good := w.data(f, attr+"."+da.Field)
		if !good {
			ok = false
			continue
		}
		a, _ := store.AppendCanonicalJSON(nil, got)
		b, _ := store.AppendCanonicalJSON(nil, want)
		if !set || string(a) != string(b) {
			w.fail(errorf(v.LookupPath(cue.MakePath(cue.Str("attrs"), cue.Str(da.Attr))), attr+".attrs."+da.Attr,
				"attrs.%s differs from %s: %s builds from attrs.%s, which the schema makes from %s; write %s, not attrs.%s", da.Attr, da.Field, d.Builder, da.Attr, da.Field, da.Field, da.Attr))
			ok = false
		}
	}
	return ok
}
