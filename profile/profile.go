// Package profile owns profiles and their generations: recording a
// realization as the next generation of a profile (a content-addressed
// generation object whose roots.json names the roots it realized, by
// attribute path, and the configuration's directory and files, and which
// refers to each root, so GC keeps their closures), listing
// generations, choosing the current one (rollback), and the link
// Dir/profiles/NAME to the current generation object. The rows live in
// the store's database (store.GenerationRecord) and, for a database
// rebuilt from disk, in the store's records (Dir/generations); a
// generation is valid from the transaction that records it, and durable
// with its link when Record or SetCurrent returns. It never imports CUE,
// eval, policy or realize.
package profile

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/store"
)

// Generation is one realization recorded in a profile: which roots it
// built (by CUE path), the generation object that holds them (a store
// path whose references are the roots, so the garbage collector keeps
// their closures), and what it was built from.
type Generation struct {
	Profile string
	Number  int
	// Toplevel is the generation object: a store path whose roots.json
	// lists the roots and which refers to each of them.
	Toplevel store.Path
	Roots    map[string]store.Path
	Created  int64 // Unix seconds
	// ConfigHash is the blake3 of the configuration's files.
	ConfigHash string
	Config     string // the configuration's files, for people
	// ConfigDir is the configuration's directory (absolute) and
	// ConfigFiles its .cue files, relative to it, as the generation
	// object records them; both empty for a generation recorded before
	// they were kept.
	ConfigDir   string
	ConfigFiles []string
	ClosureSize int64
	Current     bool
}

// Origin is what a generation is realized from: the configuration's
// hash and files (Hash and Config, kept in the store's generation row),
// and its directory and files relative to it (kept in the generation
// object).
type Origin struct {
	Hash   string
	Config string
	Dir    string   // absolute; "" records none
	Files  []string // relative to Dir
}

// generationObject is roots.json in a generation object. Config is
// omitted when not known, so an object without it is byte for byte what
// it was before it was kept.
type generationObject struct {
	Profile string            `json:"profile"`
	Roots   map[string]string `json:"roots"`
	Config  *objectConfig     `json:"config,omitempty"`
}

type objectConfig struct {
	Dir   string   `json:"dir"`
	Files []string `json:"files"`
}

// Object is what a generation object records: its profile, its roots by
// attribute path, and the configuration's directory and files (empty in
// an object recorded before they were kept).
type Object struct {
	Profile     string
	Roots       map[string]store.Path
	ConfigDir   string
	ConfigFiles []string
}

// Record records a new generation of profile holding roots (which must
// be valid) and makes it current, unless the current one holds the same
// roots. The generation object is content-addressed: the same roots give
// the same object. recorded is false when it did not record one.
func Record(ctx context.Context, st *store.Store, profile string, roots map[string]store.Path, configHash, config string) (gen *Generation, recorded bool, err error) {
	return RecordFrom(ctx, st, profile, roots, Origin{Hash: configHash, Config: config})
}

// RecordFrom is Record that also records the configuration's directory
// and files in the generation object: the same roots realized from
// another directory are another generation.
func RecordFrom(ctx context.Context, st *store.Store, profile string, roots map[string]store.Path, from Origin) (gen *Generation, recorded bool, err error) {
	configHash, config := from.Hash, from.Config
	if err := store.CheckName(profile); err != nil {
		return nil, false, fmt.Errorf("profile: %w", err)
	}
	// The generation object is unrooted until its row exists.
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		return nil, false, err
	}
	defer gcLock.Unlock()
	top, err := addObject(ctx, st, profile, roots, from)
	if err != nil {
		return nil, false, fmt.Errorf("recording a generation of %s: %w", profile, err)
	}
	size, err := st.ClosureSize(ctx, top)
	if err != nil {
		return nil, false, err
	}

	// Realizing what the current generation already is records nothing.
	if cur, err := Get(ctx, st, profile, 0); err == nil && cur.Toplevel == top {
		cur.Roots = roots
		return cur, false, nil
	}
	g := &Generation{Profile: profile, Toplevel: top, Roots: roots, Created: st.Now().Unix(), ConfigHash: configHash, Config: config,
		ConfigDir: from.Dir, ConfigFiles: from.Files, ClosureSize: size, Current: true}
	g.Number, err = st.AddGeneration(ctx, store.GenerationRecord{
		GenerationID: store.GenerationID{Profile: profile}, Toplevel: top, Created: g.Created,
		ConfigHash: configHash, Config: config, ClosureSize: size,
	})
	if err != nil {
		return nil, false, err
	}
	return g, true, linkProfile(st, profile, top)
}

// addObject adds the generation object of roots to the store.
func addObject(ctx context.Context, st *store.Store, profile string, roots map[string]store.Path, from Origin) (store.Path, error) {
	obj := generationObject{Profile: profile, Roots: map[string]string{}}
	if from.Dir != "" {
		obj.Config = &objectConfig{Dir: from.Dir, Files: from.Files}
		if obj.Config.Files == nil {
			obj.Config.Files = []string{}
		}
	}
	var rootPaths []store.Path
	for attr, p := range roots {
		obj.Roots[attr] = p.String()
		rootPaths = append(rootPaths, p)
	}
	b, err := json.MarshalIndent(obj, "", "  ")
	if err != nil {
		return store.Path{}, err
	}
	tmp, err := st.TempDir("generation-")
	if err != nil {
		return store.Path{}, err
	}
	defer fstree.RemoveTree(tmp)
	dir := filepath.Join(tmp, "generation")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return store.Path{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, "roots.json"), append(b, '\n'), 0o644); err != nil {
		return store.Path{}, err
	}
	return st.Add(ctx, dir, profile+"-generation", rootPaths...)
}

// linkProfile points Dir/profiles/NAME at the current generation object,
// durably.
func linkProfile(st *store.Store, profile string, top store.Path) error {
	dir := filepath.Join(st.Dir, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	link := filepath.Join(dir, profile)
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(st.Physical(top), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		return err
	}
	return st.Sync()
}

// List returns profile's generations, oldest first.
func List(ctx context.Context, st *store.Store, profile string) ([]*Generation, error) {
	recs, err := st.GenerationRecords(ctx, profile)
	if err != nil {
		return nil, err
	}
	gens := make([]*Generation, len(recs))
	for i, r := range recs {
		g := &Generation{Profile: profile, Number: r.Number, Toplevel: r.Toplevel, Created: r.Created,
			ConfigHash: r.ConfigHash, Config: r.Config, ClosureSize: r.ClosureSize, Current: r.Current}
		obj, err := ReadObject(st.Physical(g.Toplevel))
		if err != nil {
			return nil, fmt.Errorf("generation %d of %s: %w", g.Number, g.Profile, err)
		}
		g.Roots, g.ConfigDir, g.ConfigFiles = obj.Roots, obj.ConfigDir, obj.ConfigFiles
		gens[i] = g
	}
	return gens, nil
}

// Expired returns the generations of every profile that are not its
// current one and that are older than its newest keep (when keep > 0) and
// were created more than olderThan ago (when olderThan > 0): what
// `hephc gc --keep-generations --older-than` deletes (store.GCOptions).
// It returns none when neither limit is given.
func Expired(ctx context.Context, st *store.Store, keep int, olderThan time.Duration) ([]store.GenerationID, error) {
	if keep <= 0 && olderThan <= 0 {
		return nil, nil
	}
	recs, err := st.GenerationRecords(ctx, "")
	if err != nil {
		return nil, err
	}
	cutoff := st.Now().Add(-olderThan).Unix()
	left := map[string]int{} // each profile's generations not seen yet
	for _, r := range recs {
		left[r.Profile]++
	}
	var out []store.GenerationID
	for _, r := range recs {
		left[r.Profile]--
		if r.Current || keep > 0 && left[r.Profile] < keep || olderThan > 0 && r.Created >= cutoff {
			continue
		}
		out = append(out, r.GenerationID)
	}
	return out, nil
}

// ReadObject reads the generation object at dir (a physical path, such
// as what Dir/profiles/NAME points at).
func ReadObject(dir string) (*Object, error) {
	b, err := os.ReadFile(filepath.Join(dir, "roots.json"))
	if err != nil {
		return nil, err
	}
	var obj generationObject
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "roots.json"), err)
	}
	o := &Object{Profile: obj.Profile, Roots: make(map[string]store.Path, len(obj.Roots))}
	for attr, p := range obj.Roots {
		if o.Roots[attr], err = store.ParsePath(p); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "roots.json"), err)
		}
	}
	if obj.Config != nil {
		o.ConfigDir, o.ConfigFiles = obj.Config.Dir, obj.Config.Files
	}
	return o, nil
}

// Get returns generation n of profile (n = 0: the current one).
func Get(ctx context.Context, st *store.Store, profile string, n int) (*Generation, error) {
	gens, err := List(ctx, st, profile)
	if err != nil {
		return nil, err
	}
	for _, g := range gens {
		if g.Number == n || n == 0 && g.Current {
			return g, nil
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("profile %s has no generations", profile)
	}
	return nil, fmt.Errorf("profile %s has no generation %d (it has %s)", profile, n, generationNumbers(gens))
}

// SetCurrent makes generation n of profile the current one.
func SetCurrent(ctx context.Context, st *store.Store, profile string, n int) (*Generation, error) {
	g, err := Get(ctx, st, profile, n)
	if err != nil {
		return nil, err
	}
	if err := st.SetCurrentGeneration(ctx, profile, n); err != nil {
		return nil, err
	}
	g.Current = true
	return g, linkProfile(st, profile, g.Toplevel)
}

func generationNumbers(gens []*Generation) string {
	if len(gens) == 0 {
		return "none"
	}
	nums := make([]int, len(gens))
	for i, g := range gens {
		nums[i] = g.Number
	}
	slices.Sort(nums)
	return fmt.Sprint(nums)
}
