package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "path-info",
		args:    "[--closure] [--json] STORE-PATH…",
		summary: "show what the store knows of paths: content hash, size, references, deriver",
		flags: func(fs *pflag.FlagSet) {
			fs.Bool("closure", false, "show every path in the closure, and its total size")
			fs.Bool("json", false, "print JSON")
		},
		run: runPathInfo,
	})
}

// jsonPathInfo is a path as `path-info --json` prints it. Location is
// where the path is on this machine, in the store's directory (only
// builds see /heph/store).
type jsonPathInfo struct {
	Path        string   `json:"path"`
	Location    string   `json:"location"`
	ContentHash string   `json:"contentHash"`
	Size        int64    `json:"size"`
	Files       int      `json:"files"`
	Deriver     string   `json:"deriver"`
	Registered  string   `json:"registered"`
	CA          string   `json:"ca,omitempty"`
	References  []string `json:"references"`
}

func runPathInfo(e *env, fs *pflag.FlagSet, args []string) error {
	closure, _ := fs.GetBool("closure")
	asJSON, _ := fs.GetBool("json")
	st, paths, err := openPaths(e, args, closure)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	var infos []*store.PathInfo
	var total int64
	for _, p := range paths {
		info, ok, err := st.QueryPathInfo(ctx, p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
		}
		infos = append(infos, info)
		total += info.Size
	}
	if asJSON {
		out := make([]jsonPathInfo, len(infos))
		for i, info := range infos {
			j := jsonPathInfo{
				Path: info.Path.String(), Location: st.Physical(info.Path), ContentHash: info.ContentHash.String(), Size: info.Size, Files: info.Files,
				Deriver: info.Deriver.String(), Registered: time.Unix(info.Registered, 0).UTC().Format(time.RFC3339),
				CA: info.CA, References: []string{},
			}
			for _, r := range info.References {
				j.References = append(j.References, r.String())
			}
			out[i] = j
		}
		b, err := eval.MarshalIndent(out)
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, info := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", info.Path, store.FormatSize(info.Size), info.ContentHash)
		if !closure {
			fmt.Fprintf(tw, "  location\t%s\n", st.Physical(info.Path))
			fmt.Fprintf(tw, "  deriver\t%s\n", info.Deriver)
			fmt.Fprintf(tw, "  registered\t%s\n", time.Unix(info.Registered, 0).UTC().Format(time.RFC3339))
			if info.CA != "" {
				fmt.Fprintf(tw, "  pinned\t%s\n", info.CA)
			}
			for _, r := range info.References {
				fmt.Fprintf(tw, "  references\t%s\n", r)
			}
		}
	}
	if closure {
		fmt.Fprintf(tw, "%d paths\t%s\n", len(infos), store.FormatSize(total))
	}
	return tw.Flush()
}

// pathArg accepts a store path, its base name, or a path to (or a
// symlink into) the physical store such as ./result.
func pathArg(e *env, st *store.Store, s string) (store.Path, error) {
	if p, err := store.ParsePath(s); err == nil {
		return p, nil
	}
	abs := absPath(e.cwd, s)
	if _, err := os.Lstat(abs); errors.Is(err, fs.ErrNotExist) && (strings.ContainsRune(s, '/') || s == "result") {
		// A link such as ./result that is not there: not bad usage.
		return store.Path{}, fmt.Errorf("no %s here", s)
	}
	if target, err := filepath.EvalSymlinks(abs); err == nil {
		if rel, ok := strings.CutPrefix(target, filepath.Join(st.Dir, "store")+"/"); ok {
			base, _, _ := strings.Cut(rel, "/")
			return store.ParsePath(base)
		}
	}
	return store.Path{}, usagef("%q is not a store path", s)
}

// closureArgs resolves args to store paths, with their closure if asked,
// sorted.
func closureArgs(ctx context.Context, e *env, st *store.Store, args []string, closure bool) ([]store.Path, error) {
	var paths []store.Path
	for _, a := range args {
		p, err := pathArg(e, st, a)
		if err != nil {
			return nil, err
		}
		if _, ok, err := st.QueryPathInfo(ctx, p); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
		}
		paths = append(paths, p)
	}
	if closure {
		return st.Closure(ctx, paths...)
	}
	return paths, nil
}

// openPaths opens the store and resolves args, at least one, to valid
// store paths (closureArgs), with their closure if asked; the caller
// closes the store.
func openPaths(e *env, args []string, closure bool) (*store.Store, []store.Path, error) {
	if len(args) == 0 {
		return nil, nil, usagef("want at least one store path")
	}
	st, err := openStore(e)
	if err != nil {
		return nil, nil, err
	}
	paths, err := closureArgs(context.Background(), e, st, args, closure)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, paths, nil
}
