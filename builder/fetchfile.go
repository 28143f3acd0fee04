package builder

import (
	"fmt"
	"io"
	"os"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/store/sandbox"
)

func init() { sandbox.RegisterBuiltin("fetch-file", fetchFile) }

// fetchFile copies a file of the configuration into $out (its executable
// bit kept); the store checks it against the pinned blake3 hash.
func fetchFile(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	in, err := os.Open(store.FetchFileSource)
	if err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("fetch-file: %s is not a regular file", info.Derivation.Attrs["file"])
	}
	out, err := os.OpenFile(info.Out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm()|0o200)
	if err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fetch-file: %w", err)
	}
	fmt.Fprintf(stdout, "copied %s (%d bytes)\n", info.Derivation.Attrs["file"], n)
	return nil
}
