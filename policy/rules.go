package policy

import (
	"fmt"
	"sort"
	"strings"

	"cuelang.org/go/cue"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/srcpos"
)

// rule is one rule of a policy over the graph: its path in the policy and
// its value.
type rule struct {
	path string
	v    cue.Value
}

func (c *checker) rule(path string) (rule, bool) {
	v := c.policy.Value.LookupPath(cue.ParsePath(path))
	return rule{path, v}, v.Exists()
}

func (r rule) pos() srcpos.Pos { return eval.ValuePos(r.v) }

func (r rule) strings() []string {
	var out []string
	r.v.Decode(&out) // validated as concrete when the policy was loaded
	return out
}

func setOf(list []string) map[string]bool {
	set := make(map[string]bool, len(list))
	for _, s := range list {
		set[s] = true
	}
	return set
}

// graphRules checks the policy's rules over the graph.
func (c *checker) graphRules() {
	nodes := c.g.SortedNodes()
	c.licenses(nodes)
	c.modules(nodes)
	c.fetchers(nodes)
	c.groups()
	c.images(nodes)
	c.testRules() // tests.go
}

// at returns where field of n (e.g. meta.license) is written, else where
// n is.
func at(n *eval.Node, field string) srcpos.Pos {
	if v := n.Value().LookupPath(cue.ParsePath(field)); v.Exists() {
		if p := eval.ValuePos(v); p.IsValid() {
			return p
		}
	}
	return n.Pos
}

func channel(n *eval.Node) string {
	if n.Meta.Channel == "" {
		return "stable"
	}
	return n.Meta.Channel
}

func (c *checker) licenses(nodes []*eval.Node) {
	r, ok := c.rule("licenses.allow")
	if !ok {
		return
	}
	list := r.strings()
	lower := make([]string, len(list))
	for i, id := range list {
		lower[i] = strings.ToLower(id)
	}
	allowed := setOf(lower)
	for _, n := range nodes {
		if n.Meta.License == "" {
			continue
		}
		ok, bad, err := licenseAllowed(n.Meta.License, allowed)
		switch {
		case err != nil:
			c.add(r.path, n.Attr+".meta.license", err.Error(), r.pos(), at(n, "meta.license"))
		case !ok:
			msg := fmt.Sprintf("license %s is not allowed", n.Meta.License)
			if len(bad) != 1 || bad[0] != n.Meta.License {
				msg = fmt.Sprintf("license %s is not allowed: %s", n.Meta.License, strings.Join(bad, ", "))
			}
			c.add(r.path, n.Attr+".meta.license", fmt.Sprintf("%s (allowed: %s)", msg, strings.Join(list, ", ")), r.pos(), at(n, "meta.license"))
		}
	}
}

// goModule returns the module path and version a #GoModule fetches.
func goModule(n *eval.Node) (path, version string, ok bool) {
	if n.Drv.Builder != builtins.FetchGoMod {
		return "", "", false
	}
	path, _ = n.Drv.Attrs["module"].(string)
	version, _ = n.Drv.Attrs["version"].(string)
	return path, version, path != ""
}

// hasPathPrefix reports whether the module path p starts with prefix at a
// path element boundary.
func hasPathPrefix(p, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

func (c *checker) modules(nodes []*eval.Node) {
	prefixes, checkSource := c.rule("sources.modules")
	minimum, checkMin := c.rule("versions.minimum")
	banned, checkBanned := c.rule("versions.banned")
	noPseudo, checkPseudo := c.rule("versions.noPseudo")
	var allowed []string
	if checkSource {
		allowed = prefixes.strings()
	}
	var pseudoChannels map[string]bool
	if checkPseudo {
		pseudoChannels = setOf(noPseudo.strings())
	}
	for _, n := range nodes {
		path, version, ok := goModule(n)
		if !ok {
			continue
		}
		if checkSource && !anyPrefix(path, allowed) {
			c.add(prefixes.path, n.Attr+".path", fmt.Sprintf("module %s is not from an allowed source (allowed: %s)", path, strings.Join(allowed, ", ")), prefixes.pos(), at(n, "path"))
		}
		if checkMin {
			if m := minimum.v.LookupPath(cue.MakePath(cue.Str(path))); m.Exists() {
				min, _ := m.String()
				if semver.Compare(version, min) < 0 {
					c.add(minimum.path+"."+cue.Str(path).String(), n.Attr+".version", fmt.Sprintf("%s %s is older than the minimum %s", path, version, min), eval.ValuePos(m), at(n, "version"))
				}
			}
		}
		if checkBanned {
			if vs := banned.v.LookupPath(cue.MakePath(cue.Str(path))); vs.Exists() {
				it, _ := vs.Fields()
				for it != nil && it.Next() {
					if semver.Compare(version, it.Selector().Unquoted()) != 0 {
						continue
					}
					reason, _ := it.Value().String()
					c.add(banned.path+"."+cue.Str(path).String()+"."+it.Selector().String(), n.Attr+".version", fmt.Sprintf("%s %s is banned: %s", path, version, reason), eval.ValuePos(it.Value()), at(n, "version"))
				}
			}
		}
		if ch := channel(n); pseudoChannels[ch] && module.IsPseudoVersion(version) {
			c.add(noPseudo.path, n.Attr+".version", fmt.Sprintf("%s %s is a pseudo-version, which channel %s does not take", path, version, ch), noPseudo.pos(), at(n, "version"))
		}
	}
}

func anyPrefix(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if hasPathPrefix(p, pre) {
			return true
		}
	}
	return false
}

// fetchers checks that fixed-output derivations, the only builds with
// network, use an allowed builder.
func (c *checker) fetchers(nodes []*eval.Node) {
	r, ok := c.rule("sources.fetchers")
	if !ok {
		return
	}
	list := r.strings()
	allowed := setOf(list)
	for _, n := range nodes {
		if n.Drv.IsFixedOutput() && !allowed[n.Drv.Builder] {
			c.add(r.path, n.Attr+".builder", fmt.Sprintf("fixed-output derivation (a build with network) uses builder %s (allowed: %s)", n.Drv.Builder, strings.Join(list, ", ")), r.pos(), at(n, "builder"))
		}
	}
}

// groups checks that each group the policy names provides its
// capabilities.
func (c *checker) groups() {
	r, ok := c.rule("groups")
	if !ok {
		return
	}
	it, err := r.v.Fields()
	if err != nil {
		return
	}
	for it.Next() {
		gpath := it.Selector().Unquoted()
		want := rule{r.path + "." + it.Selector().String() + ".provides", it.Value().LookupPath(cue.ParsePath("provides"))}
		caps := want.strings()
		// The key is a path (base, or groups.base), or one label that
		// needs quotes ("my-group").
		p := cue.ParsePath(gpath)
		if p.Err() != nil {
			p = cue.MakePath(cue.Str(gpath))
		}
		group := c.root.LookupPath(p)
		if !group.Exists() {
			c.add(want.path, gpath, fmt.Sprintf("the configuration has no group %s, which must provide %s", gpath, strings.Join(caps, ", ")), want.pos(), srcpos.Pos{})
			continue
		}
		pkgs := group.LookupPath(cue.ParsePath("packages"))
		have := map[string]bool{}
		pit, err := pkgs.Fields()
		if err == nil {
			for pit.Next() {
				if !pit.Value().LookupPath(cue.ParsePath("builder")).Exists() {
					continue // not a derivation: nothing is built from it
				}
				var provides []string
				pit.Value().LookupPath(cue.ParsePath("meta.provides")).Decode(&provides)
				for _, p := range provides {
					have[p] = true
				}
			}
		}
		where := eval.ValuePos(pkgs)
		if !where.IsValid() {
			where = eval.ValuePos(group)
		}
		for _, cap := range caps {
			if !have[cap] {
				c.add(want.path, gpath+".packages", fmt.Sprintf("no package of group %s provides %s (they provide: %s)", gpath, cap, listOrNone(have)), want.pos(), where)
			}
		}
	}
}

func listOrNone(set map[string]bool) string {
	if len(set) == 0 {
		return "nothing"
	}
	var l []string
	for k := range set {
		l = append(l, k)
	}
	sort.Strings(l)
	return strings.Join(l, ", ")
}

// images checks the rules over each image's closure.
func (c *checker) images(nodes []*eval.Node) {
	for _, img := range nodes {
		if img.Drv.Builder != builtins.SystemToplevel {
			continue
		}
		var closure []*eval.Node
		for _, prefix := range imageRulePaths(img) {
			if _, ok := c.rule(prefix); !ok {
				continue
			}
			if closure == nil {
				for _, h := range c.g.Closure(img.Hash) {
					closure = append(closure, c.g.Nodes[h])
				}
			}
			c.imageRules(prefix, img, closure)
		}
	}
}

// imageRulePaths are the rules that apply to the image img: image, and
// images.NAME for its name and for its key when it is written at
// images.KEY.
func imageRulePaths(img *eval.Node) []string {
	paths := []string{"image", "images." + cue.Str(img.Drv.Name).String()}
	if sels := cue.ParsePath(img.Attr).Selectors(); len(sels) == 2 && sels[0].String() == "images" {
		if key := "images." + sels[1].String(); key != paths[1] {
			paths = append(paths, key)
		}
	}
	return paths
}

func (c *checker) imageRules(prefix string, img *eval.Node, closure []*eval.Node) {
	if r, ok := c.rule(prefix + ".channels"); ok {
		list := r.strings()
		allowed := setOf(list)
		for _, n := range closure {
			if ch := channel(n); !allowed[ch] {
				c.add(r.path, n.Attr+".meta.channel", fmt.Sprintf("channel %s is not allowed in image %s (allowed: %s)", ch, img.Drv.Name, strings.Join(list, ", ")), r.pos(), at(n, "meta.channel"))
			}
		}
	}
	if r, ok := c.rule(prefix + ".maxClosureBytes"); ok {
		max, _ := r.v.Int64()
		c.limits = append(c.limits, SizeLimit{Image: img.Path(), Attr: img.Attr, Max: max, Rule: r.path, Policy: r.pos(), System: img.Pos})
	}
	if r, ok := c.rule(prefix + ".consoleShell"); ok {
		want, _ := r.v.Bool()
		if got, _ := img.Drv.Attrs["consoleShell"].(bool); got != want {
			msg := fmt.Sprintf("image %s has a root shell on its console (consoleShell: true), which the policy forbids", img.Drv.Name)
			if want {
				msg = fmt.Sprintf("image %s has no shell on its console (consoleShell: false); the policy requires one", img.Drv.Name)
			}
			c.add(r.path, img.Attr+".consoleShell", msg, r.pos(), at(img, "consoleShell"))
		}
	}
	if r, ok := c.rule(prefix + ".maxDerivations"); ok {
		max, _ := r.v.Int64()
		if int64(len(closure)) > max {
			c.add(r.path, img.Attr, fmt.Sprintf("image %s needs %d derivations, more than %d", img.Drv.Name, len(closure), max), r.pos(), img.Pos)
		}
	}
}
