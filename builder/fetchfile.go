package builder

import (
	"errors"
	"fmt"
	"io"
	"path"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/localsrc"
	"hephc.dev/hephc/realize"
)

func init() { register(builtins.FetchFile, fetchFile) }

// fetchFile copies a file or a directory tree of the configuration into
// $out, executable bits and symbolic links kept, through localsrc: nothing
// outside the source is followed, and attrs.include and attrs.exclude,
// if given, choose part of a directory. The store checks the copy against
// the pinned blake3 hash.
func fetchFile(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	name := info.Derivation.Attrs["file"]
	limit, err := fetchLimit(env, DefaultMaxLocalBytes)
	if err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	var f localsrc.Filter
	if f.Include, err = stringsAttr(info.Derivation.Attrs, "include"); err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	if f.Exclude, err = stringsAttr(info.Derivation.Attrs, "exclude"); err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	dir, base := path.Split(realize.FetchFileSource)
	st, err := localsrc.Copy(dir, base, f, info.Out, limit)
	if errors.Is(err, localsrc.ErrTooLarge) {
		return fmt.Errorf("fetch-file: %v: %w (raise the derivation's fetch limit, %s in the builder's environment)", name, err, FetchLimitEnv)
	}
	if err != nil {
		return fmt.Errorf("fetch-file: %v: %w", name, err)
	}
	fmt.Fprintf(stdout, "copied %s (%d files, %d bytes)\n", name, st.Files, st.Bytes)
	return nil
}

// stringsAttr returns the list of strings attrs[key], if there is one.
func stringsAttr(attrs map[string]any, key string) ([]string, error) {
	v, ok := attrs[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("attrs.%s is not a list of strings", key)
	}
	out := make([]string, len(list))
	for i, e := range list {
		if out[i], ok = e.(string); !ok {
			return nil, fmt.Errorf("attrs.%s[%d] is not a string", key, i)
		}
	}
	return out, nil
}
