package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"hephc.dev/hephc/fstree"
)

// WriteLayoutTar writes the layout in dir to w as one tar (what skopeo
// calls an oci-archive): oci-layout, index.json, then the blobs sorted by
// digest, mtime 0, owner 0, mode 0444 (directories 0555). The same layout
// gives the same bytes.
func WriteLayoutTar(w io.Writer, dir string) error {
	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		return fmt.Errorf("writing the archive of %s: %w", dir, err)
	}
	names := []string{"oci-layout", "index.json"}
	var digests []string
	for _, b := range blobs {
		if blobName.MatchString(b.Name()) {
			digests = append(digests, b.Name())
		}
	}
	sort.Strings(digests)
	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o555, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, d := range digests {
		names = append(names, "blobs/sha256/"+d)
	}
	for _, n := range names {
		if err := writeTarFile(tw, filepath.Join(dir, n), n); err != nil {
			return fmt.Errorf("writing the archive of %s: %w", dir, err)
		}
	}
	return tw.Close()
}

func writeTarFile(tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", name)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: 0o444, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}

var blobName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ExtractLayoutTar reads a tar written by WriteLayoutTar into dst (which
// must exist and be empty). Only the files of a layout are accepted:
// oci-layout, index.json and blobs/sha256/<64 hex digits>, regular files
// each once, and the directories blobs and blobs/sha256; at most maxBytes
// in all. What it holds is checked later, by Open and Import.
func ExtractLayoutTar(r io.Reader, dst string, maxBytes int64) error {
	if err := os.MkdirAll(filepath.Join(dst, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	left := maxBytes
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: not a tar of an OCI layout: %v", errRefused, err)
		}
		name := hdr.Name
		switch {
		case hdr.Typeflag == tar.TypeDir && (name == "blobs/" || name == "blobs/sha256/" || name == "./" || name == "./blobs/" || name == "./blobs/sha256/"):
			continue
		case hdr.Typeflag != tar.TypeReg:
			return fmt.Errorf("%w: %s: only the regular files of an OCI layout may be in its archive", errRefused, printable(name))
		}
		if len(name) > 2 && name[:2] == "./" {
			name = name[2:]
		}
		ok := name == "oci-layout" || name == "index.json"
		if !ok && len(name) == len("blobs/sha256/")+64 && name[:len("blobs/sha256/")] == "blobs/sha256/" {
			ok = blobName.MatchString(name[len("blobs/sha256/"):])
		}
		if !ok {
			return fmt.Errorf("%w: %s is not a file of an OCI layout", errRefused, printable(hdr.Name))
		}
		if seen[name] {
			return fmt.Errorf("%w: %s is in the archive twice", errRefused, name)
		}
		seen[name] = true
		if hdr.Size < 0 || hdr.Size > left {
			return fmt.Errorf("%w: the archive holds more than %d bytes", errRefused, maxBytes)
		}
		left -= hdr.Size
		if err := fstree.CreateFile(filepath.Join(dst, filepath.FromSlash(name)), tr, hdr.Size, false); err != nil {
			return err
		}
	}
	if !seen["index.json"] || !seen["oci-layout"] {
		return fmt.Errorf("%w: no oci-layout and index.json: not an archive of an OCI layout", errRefused)
	}
	return nil
}
