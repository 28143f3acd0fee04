package builder

import (
	"fmt"
	"io"
	"os"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/fstree"
	"hephc.dev/hephc/realize"
)

func init() { register(builtins.FetchFile, fetchFile) }

// fetchFile copies a file or a directory tree of the configuration into
// $out, executable bits and symbolic links kept; the store checks it
// against the pinned blake3 hash.
func fetchFile(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	name := info.Derivation.Attrs["file"]
	fi, err := os.Stat(realize.FetchFileSource)
	if err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	var files int
	var bytes int64
	switch {
	case fi.Mode().IsRegular():
		n, err := fstree.CopyFile(realize.FetchFileSource, info.Out, fi.Mode()&0o111 != 0)
		if err != nil {
			return fmt.Errorf("fetch-file: %w", err)
		}
		files, bytes = 1, n
	case fi.IsDir():
		files, bytes, err = fstree.CopyTree(realize.FetchFileSource, info.Out)
		if err != nil {
			return fmt.Errorf("fetch-file: %v: %w", name, err)
		}
	default:
		return fmt.Errorf("fetch-file: %s is neither a regular file nor a directory", name)
	}
	fmt.Fprintf(stdout, "copied %s (%d files, %d bytes)\n", name, files, bytes)
	return nil
}
