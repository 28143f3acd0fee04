package builder

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/store"
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
	fi, err := os.Stat(store.FetchFileSource)
	if err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	var files int
	var bytes int64
	switch {
	case fi.Mode().IsRegular():
		n, err := copyFile(store.FetchFileSource, info.Out, fi.Mode())
		if err != nil {
			return fmt.Errorf("fetch-file: %w", err)
		}
		files, bytes = 1, n
	case fi.IsDir():
		files, bytes, err = copyTree(store.FetchFileSource, info.Out)
		if err != nil {
			return fmt.Errorf("fetch-file: %v: %w", name, err)
		}
	default:
		return fmt.Errorf("fetch-file: %s is neither a regular file nor a directory", name)
	}
	fmt.Fprintf(stdout, "copied %s (%d files, %d bytes)\n", name, files, bytes)
	return nil
}

// copyFile copies the regular file src to the new file dst, keeping its
// executable bits.
func copyFile(src, dst string, mode fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm()|0o200)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// copyTree copies the directory tree src to the new directory dst:
// directories, regular files (executable bits kept) and symbolic links (as
// they are). Anything else is refused.
func copyTree(src, dst string) (files int, bytes int64, err error) {
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			return os.Mkdir(target, 0o755)
		case fi.Mode().IsRegular():
			n, err := copyFile(p, target, fi.Mode())
			files++
			bytes += n
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files++
			return os.Symlink(link, target)
		default:
			return fmt.Errorf("%s is not a regular file, directory or symbolic link", rel)
		}
	})
	return files, bytes, err
}
