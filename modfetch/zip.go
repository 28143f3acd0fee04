package modfetch

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// ToolchainModule is the module the go command downloads toolchains as.
const ToolchainModule = "golang.org/toolchain"

// MaxZipBytes is the largest module zip the go command accepts
// (golang.org/toolchain's is about 240 MB).
const MaxZipBytes = modzip.MaxZipFile

// SumMismatchError says that a module zip is not the one pinned.
type SumMismatchError struct {
	Module module.Version
	Pinned string // the pin's h1: sum
	Served string // the zip's
}

func (e *SumMismatchError) Error() string {
	return fmt.Sprintf("%s: hash mismatch: pinned %s, the proxy served %s", e.Module, e.Pinned, e.Served)
}

// Unzip checks the module zip at zip against its pinned h1: sum and only
// then extracts it into dir, as the go command does. The toolchain
// module's programs get back the executable bits its zip cannot carry.
func Unzip(dir string, mod module.Version, zip, sum string) error {
	got, err := dirhash.HashZip(zip, dirhash.Hash1)
	if err != nil {
		return fmt.Errorf("%s: the proxy served a corrupt zip (%w); pinned %s", mod, err, sum)
	}
	if got != sum {
		return &SumMismatchError{Module: mod, Pinned: sum, Served: got}
	}
	if err := modzip.Unzip(dir, mod, zip); err != nil {
		return fmt.Errorf("extracting %s: %w", mod, err)
	}
	if mod.Path == ToolchainModule {
		return markToolchainExecutable(dir)
	}
	return nil
}

// markToolchainExecutable sets the executable bits a toolchain zip cannot
// carry (bin/* and pkg/tool/*/*), as the go command does when it switches
// toolchains.
func markToolchainExecutable(root string) error {
	for _, pattern := range []string{"bin/*", "pkg/tool/*/*"} {
		files, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return err
		}
		for _, f := range files {
			fi, err := os.Lstat(f)
			if err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				if err := os.Chmod(f, fi.Mode()|0o111); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
