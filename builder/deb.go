package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"hephc.dev/hephc/builtins"
)

func init() { register(builtins.FetchDeb, fetchDeb) }

const (
	// DefaultMaxDebBytes bounds a .deb (systemd-boot-efi is 113 KB).
	DefaultMaxDebBytes = 512 << 20
	// maxDebTreeBytes bounds what a .deb unpacks to.
	maxDebTreeBytes = 4 << 30
)

// AptConfigDir is where fetch-deb reads the host's apt sources (realize
// mounts the host's, read-only, at the same path).
var AptConfigDir = "/etc/apt"

// fetchDeb downloads attrs.package's .deb from the Debian archive the
// host's apt is configured for, checks its sha256 against attrs.sha256
// before reading anything of it, and unpacks its data archive into $out.
func fetchDeb(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	var a debAttrs
	for _, f := range []struct {
		key string
		to  *string
	}{{"package", &a.Package}, {"version", &a.Version}, {"architecture", &a.Arch}, {"sha256", &a.SHA256}, {"source", &a.Source}, {"component", &a.Component}} {
		if *f.to, err = attr(info, f.key); err != nil {
			return err
		}
	}
	limit, err := fetchLimit(env, DefaultMaxDebBytes)
	if err != nil {
		return fmt.Errorf("fetch-deb: %w", err)
	}
	mirrors, err := AptMirrors(AptConfigDir)
	if err != nil {
		return fmt.Errorf("fetch-deb: %w", err)
	}
	if len(mirrors) == 0 {
		return fmt.Errorf("fetch-deb: no http(s) archive in %s/sources.list or sources.list.d: configure apt for a Debian mirror", AptConfigDir)
	}
	deb := filepath.Join(os.TempDir(), "package.deb")
	if dir, err := os.Getwd(); err == nil {
		deb = filepath.Join(dir, "package.deb") // /build
	}
	var errs []string
	var got string
	for _, m := range mirrors {
		url := strings.TrimSuffix(m, "/") + "/" + a.PoolPath()
		fmt.Fprintf(stdout, "fetching %s\n", url)
		got, err = fetchSHA256(url, deb, limit)
		if err == nil {
			break
		}
		errs = append(errs, err.Error())
	}
	if err != nil {
		return fmt.Errorf("fetch-deb: %s %s (%s) is in none of the host's archives:\n\t%s", a.Package, a.Version, a.Arch, strings.Join(errs, "\n\t"))
	}
	if got != a.SHA256 {
		return fmt.Errorf("fetch-deb: %s: sha256 mismatch: the pin says %s, the archive served %s; nothing was unpacked", a.PoolPath(), a.SHA256, got)
	}
	f, err := os.Open(deb)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := UnpackDeb(f, info.Out)
	if err != nil {
		return fmt.Errorf("fetch-deb: %s: %w", path.Base(a.PoolPath()), err)
	}
	fmt.Fprintf(stdout, "unpacked %s %s (%s): %d files\n", a.Package, a.Version, a.Arch, n)
	return nil
}

// debAttrs are what a #DebianPackage tells fetch-deb.
type debAttrs struct{ Package, Version, Arch, SHA256, Source, Component string }

// PoolPath is the .deb's path in an archive: pool/COMPONENT/PREFIX/SOURCE/
// NAME_VERSION_ARCH.deb, the version without its epoch, PREFIX the
// source's first letter (lib and a letter for a lib… source).
func (a debAttrs) PoolPath() string {
	prefix := a.Source[:1]
	if strings.HasPrefix(a.Source, "lib") && len(a.Source) > 3 {
		prefix = a.Source[:4]
	}
	v := a.Version
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	return fmt.Sprintf("pool/%s/%s/%s/%s_%s_%s.deb", a.Component, prefix, a.Source, a.Package, v, a.Arch)
}

// fetchSHA256 downloads url to dest, at most limit bytes, and returns the
// sha256 of what it got.
func fetchSHA256(url, dest string, limit int64) (string, error) {
	client := &http.Client{Timeout: 30 * time.Minute}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(dest)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", url, err)
	}
	if n > limit {
		return "", fmt.Errorf("%s: %w", url, tooLarge("the .deb", limit))
	}
	return hex.EncodeToString(h.Sum(nil)), f.Close()
}

// AptMirrors returns the http and https URIs of the deb (binary) sources
// apt is configured with under dir: sources.list, then sources.list.d's
// *.list and *.sources files in name order; each once, in that order.
func AptMirrors(dir string) ([]string, error) {
	files := []string{filepath.Join(dir, "sources.list")}
	d := filepath.Join(dir, "sources.list.d")
	ents, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, filepath.Join(d, n))
	}
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(file, ".sources") {
			for _, u := range deb822URIs(b) {
				add(u)
			}
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if i := strings.IndexByte(l, '#'); i >= 0 {
				l = l[:i]
			}
			f := strings.Fields(l)
			if len(f) < 2 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") { // [arch=amd64 signed-by=…]
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				if len(f) < 2 {
					continue
				}
				f = f[1:]
			}
			add(f[0])
		}
	}
	return out, nil
}

// deb822URIs returns the URIs of the stanzas of a .sources file whose
// Types include deb and that are not Enabled: no.
func deb822URIs(b []byte) []string {
	var out []string
	for _, stanza := range strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n\n") {
		fields := map[string]string{}
		var last string
		for _, l := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
				continue
			}
			if (l[0] == ' ' || l[0] == '\t') && last != "" {
				fields[last] += " " + strings.TrimSpace(l)
				continue
			}
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if !contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, strings.Fields(fields["uris"])...)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// UnpackDeb unpacks the data archive of the .deb r (an ar archive holding
// debian-binary, control.tar.* and data.tar{,.xz,.zst,.gz}) into dir:
// directories, regular files (modes' permission bits kept) and symbolic
// links; hard links become copies. Owners and times are dropped. A name
// leaving dir, a device or any other kind of entry is an error. It returns
// how many files it wrote.
func UnpackDeb(r io.Reader, dir string) (int, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "!<arch>\n" {
		return 0, errors.New("not a .deb (no ar archive)")
	}
	for {
		var hdr [60]byte
		if _, err := io.ReadFull(br, hdr[:]); err == io.EOF {
			return 0, errors.New("a .deb without data.tar")
		} else if err != nil {
			return 0, fmt.Errorf("reading the .deb: %w", err)
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 || string(hdr[58:60]) != "`\n" {
			return 0, errors.New("a corrupt ar header in the .deb")
		}
		body := io.LimitReader(br, size)
		if strings.HasPrefix(name, "data.tar") {
			var tr io.Reader
			switch path.Ext(name) {
			case ".tar":
				tr = body
			case ".xz":
				x, err := xz.NewReader(body)
				if err != nil {
					return 0, fmt.Errorf("%s: %w", name, err)
				}
				tr = x
			case ".zst":
				z, err := zstd.NewReader(body)
				if err != nil {
					return 0, fmt.Errorf("%s: %w", name, err)
				}
				defer z.Close()
				tr = z
			case ".gz":
				g, err := gzip.NewReader(body)
				if err != nil {
					return 0, fmt.Errorf("%s: %w", name, err)
				}
				tr = g
			default:
				return 0, fmt.Errorf("%s: an unknown compression", name)
			}
			return untar(tr, dir)
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return 0, fmt.Errorf("reading the .deb: %w", err)
		}
		if size%2 == 1 {
			br.ReadByte()
		}
	}
}

// untar writes the tar stream r below dir (see UnpackDeb).
func untar(r io.Reader, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	tr := tar.NewReader(r)
	n := 0
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("data.tar: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "" {
			continue
		}
		if !filepath.IsLocal(name) {
			return n, fmt.Errorf("data.tar: %q leaves the package", h.Name)
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return n, err
		}
		perm := os.FileMode(h.Mode) & 0o755
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return n, err
			}
		case tar.TypeReg:
			if total += h.Size; total > maxDebTreeBytes {
				return n, tooLarge("the unpacked package", maxDebTreeBytes)
			}
			if err := writeFile(dst, tr, perm); err != nil {
				return n, err
			}
			n++
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return n, err
			}
			n++
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(h.Linkname, "./"))
			if !filepath.IsLocal(target) {
				return n, fmt.Errorf("data.tar: the hard link %q leaves the package", h.Name)
			}
			b, err := os.ReadFile(filepath.Join(dir, target))
			if err != nil {
				return n, fmt.Errorf("data.tar: the hard link %q: %w", h.Name, err)
			}
			if err := writeFile(dst, bytes.NewReader(b), perm); err != nil {
				return n, err
			}
			n++
		default:
			return n, fmt.Errorf("data.tar: %q is of a kind a package must not hold (%c)", h.Name, h.Typeflag)
		}
	}
}

func writeFile(dst string, r io.Reader, perm os.FileMode) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
