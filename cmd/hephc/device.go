package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hephc.dev/hephc/store"
)

// installDisk writes the disk image img onto the device dev, syncs, reads
// it back and compares.
func installDisk(e *env, img, dev string) error {
	start := time.Now()
	src, err := os.Open(img)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	// O_EXCL on a block device: refused while it is mounted or in use.
	out, err := os.OpenFile(dev, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w; nothing was written", dev, err)
	}
	defer out.Close()
	size, err := out.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if size < fi.Size() {
		return fmt.Errorf("%s is too small: %s, the disk image is %s; nothing was written", dev, store.FormatSize(size), store.FormatSize(fi.Size()))
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	prog := &copyProgress{w: e.stderr, total: fi.Size(), tty: isTerminal(e.stderr)}
	if _, err := io.Copy(io.MultiWriter(out, prog), src); err != nil {
		return fmt.Errorf("writing %s: %w", dev, err)
	}
	prog.done()
	if err := out.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dev, err)
	}
	dropCaches(dev)
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := sameBytes(src, io.LimitReader(out, fi.Size())); err != nil {
		return fmt.Errorf("reading %s back: %w", dev, err)
	}
	fmt.Fprintf(e.stderr, "installed %s on %s (%s): written, synced, read back and compared, in %s\n", img, dev, store.FormatSize(fi.Size()), time.Since(start).Round(time.Millisecond))
	return nil
}

func sameBytes(a, b io.Reader) error {
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	var off int64
	for {
		na, ea := io.ReadFull(a, ba)
		nb, _ := io.ReadFull(b, bb[:na])
		if nb != na || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("differs from the image in the MiB at offset %d", off)
		}
		off += int64(na)
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return nil
		}
		if ea != nil {
			return ea
		}
	}
}

// copyProgress shows how much of an install is written, on a terminal.
type copyProgress struct {
	w          io.Writer
	total, n   int64
	tty        bool
	lastShownN int64
}

func (p *copyProgress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.tty && p.n-p.lastShownN >= 16<<20 {
		p.lastShownN = p.n
		fmt.Fprintf(p.w, "\rwriting: %s of %s", store.FormatSize(p.n), store.FormatSize(p.total))
	}
	return len(b), nil
}

func (p *copyProgress) done() {
	if p.tty {
		fmt.Fprintf(p.w, "\rwriting: %s of %s\n", store.FormatSize(p.n), store.FormatSize(p.total))
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// confirm asks on stderr and reads a line from stdin.
func confirm(e *env, question string) bool {
	fmt.Fprint(e.stderr, question)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	return strings.TrimSpace(line) == "yes"
}

// Where checkDeviceFree looks; tests point them at a made-up system.
var (
	sysDevBlock   = "/sys/dev/block"
	sysClassBlock = "/sys/class/block"
	mountInfo     = "/proc/self/mountinfo"
)

// checkDeviceFree refuses the block device dev when it, or a partition of
// it, is mounted or holds /.
func checkDeviceFree(dev string) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return err
	}
	return deviceFree(dev, unix.Major(st.Rdev), unix.Minor(st.Rdev))
}

// deviceFree refuses the block device dev, numbered major:minor, when it
// or a partition of it (in sysfs) is mounted (in mountinfo).
func deviceFree(dev string, major, minor uint32) error {
	name := ""
	if b, err := os.ReadFile(fmt.Sprintf("%s/%d:%d/uevent", sysDevBlock, major, minor)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
				name = v
			}
		}
	}
	devs := map[string]bool{fmt.Sprintf("%d:%d", major, minor): true}
	if name != "" {
		ents, _ := os.ReadDir(filepath.Join(sysClassBlock, name))
		for _, en := range ents {
			if b, err := os.ReadFile(filepath.Join(sysClassBlock, name, en.Name(), "dev")); err == nil {
				devs[strings.TrimSpace(string(b))] = true
			}
		}
	}
	mi, err := os.ReadFile(mountInfo)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || !devs[f[2]] {
			continue
		}
		if f[4] == "/" {
			return fmt.Errorf("%s holds / (the running system): refused; nothing was written", dev)
		}
		return fmt.Errorf("%s is mounted (at %s): refused; unmount it first; nothing was written", dev, f[4])
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// dropCaches asks the kernel to forget path's cached pages, so a read
// back reads the disk (a hint: it may not for a file).
func dropCaches(path string) {
	if f, err := os.Open(path); err == nil {
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
	}
}
