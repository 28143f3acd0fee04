package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "deploy",
		args:    "--to DISK (-A ATTR [FILE.cue…|DIR] [--tries N] [--yes] | --status)",
		summary: "write a system into the other slot of a heph disk (an image file or a drive), to boot next with N tries; or install the whole disk image on a drive",
		flags: func(fs *pflag.FlagSet) {
			fs.String("to", "", "the heph disk: an image file (hephc image --disk) or a drive (/dev/sdX)")
			fs.StringP("attr", "A", "", "the system, e.g. images.workstation (or its disk, disks.workstation): realized first")
			fs.Int("tries", 0, "boots the new generation gets to pass its self-test before the other slot boots again (default: the disk's)")
			fs.Bool("yes", false, "write to a drive without asking")
			fs.Bool("status", false, "say which generation each slot holds and write nothing")
		},
		run: runDeploy,
	})
}

func runDeploy(e *env, fs *pflag.FlagSet, args []string) error {
	to, _ := fs.GetString("to")
	attr, _ := fs.GetString("attr")
	tries, _ := fs.GetInt("tries")
	yes, _ := fs.GetBool("yes")
	status, _ := fs.GetBool("status")
	if to == "" {
		return usagef("--to wants the disk to deploy to")
	}
	target := absPath(e.cwd, to)
	if status {
		if attr != "" {
			return usagef("--status takes no -A")
		}
		return diskStatus(e, target)
	}
	if attr == "" {
		return usagef("want -A ATTR: the system to deploy")
	}
	if tries < 0 || tries > 9 {
		return usagef("--tries wants 1 to 9, got %d", tries)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	device := fi.Mode()&os.ModeDevice != 0
	if device {
		if err := checkDeviceFree(target); err != nil {
			return err
		}
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is neither a disk image file nor a block device", to)
	}
	// Before anything is built: is it one of ours?
	ours, err := isHephDisk(target)
	if err != nil {
		return err
	}
	if !ours && !device {
		return fmt.Errorf("%s: %w (no GPT partition %s holding %s): hephc image --disk writes one; nothing was written", to, builder.ErrNotHephDisk, builder.ESPName, builder.StateFile)
	}
	st, ctx, done, err := lockedStore(e)
	if err != nil {
		return err
	}
	defer done()
	want := builtins.SystemToplevel
	if !ours {
		want = builtins.DiskImage // a drive without a heph disk: the whole image
	}
	p, err := realizeKind(ctx, e, st, attr, args, want)
	if err != nil {
		return err
	}
	if device && !yes {
		what := "write generation " + p.String() + " into the other slot of"
		if !ours {
			what = "ERASE and install the disk image " + p.String() + " on"
		}
		if !confirm(e, fmt.Sprintf("%s %s? type yes: ", what, to)) {
			return errors.New("not confirmed; nothing was written")
		}
	}
	if !ours {
		return installDisk(e, filepath.Join(st.Physical(p), builder.DiskFile), target)
	}
	return deploySlot(e, target, p, st.Physical(p), tries)
}

// realizeKind realizes attr's derivation of builder kind: the attribute
// itself, or for an #Image wanted as a disk (or a disk wanted as a
// system) the #DiskImage of the configuration that boots it (its image).
func realizeKind(ctx context.Context, e *env, st *store.Store, attr string, args []string, kind string) (store.Path, error) {
	g, _, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, useCache: true})
	if err != nil {
		return store.Path{}, err
	}
	h, ok := mainOutput(g, attr)
	if !ok {
		return store.Path{}, fmt.Errorf("%s: not one derivation", attr)
	}
	switch b := g.Nodes[h].Drv.Builder; {
	case b == kind:
	case b == builtins.DiskImage && kind == builtins.SystemToplevel:
		if h, ok = g.Nodes[h].Drv.Inputs["image"]; !ok {
			return store.Path{}, fmt.Errorf("%s: a disk image without an image input", attr)
		}
	case b == builtins.SystemToplevel && kind == builtins.DiskImage:
		// The disk is written elsewhere in the configuration.
		if g, _, err = evaluate(e, evaluation{args: args, policy: true, useCache: true}); err != nil {
			return store.Path{}, err
		}
		disk, ok := diskOf(g, h)
		if !ok {
			return store.Path{}, fmt.Errorf("%s: no #DiskImage of the configuration boots it: add one (disks: NAME: heph.#DiskImage & {inputs: {image: %s, loader: …}})", attr, attr)
		}
		h = disk
	default:
		return store.Path{}, fmt.Errorf("%s is built by %s, not an #Image or a #DiskImage", attr, b)
	}
	sg := pipeline.StoreGraph(g)
	prog := newProgress(e)
	_, err = realize.Realize(ctx, st, sg, []store.DrvHash{h}, realize.Options{
		Jobs: runtime.NumCPU(), Getenv: e.getenv, Events: prog.event, SourceDir: configDir(e, args),
	})
	prog.finish()
	if err != nil {
		return store.Path{}, err
	}
	return sg.PathOf(h), nil
}

// diskOf finds the #DiskImage whose image input is the toplevel h.
func diskOf(g *eval.Graph, h store.DrvHash) (store.DrvHash, bool) {
	var found []store.DrvHash
	for dh, n := range g.Nodes {
		if n.Drv.Builder == builtins.DiskImage && n.Drv.Inputs["image"] == h {
			found = append(found, dh)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].String() < found[j].String() })
	if len(found) == 0 {
		return store.DrvHash{}, false
	}
	return found[0], true
}

// isHephDisk says whether path holds a heph disk (read only).
func isHephDisk(path string) (bool, error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", path, err)
	}
	defer d.Close()
	_, _, err = builder.OpenESP(d)
	if errors.Is(err, builder.ErrNotHephDisk) {
		return false, nil
	}
	return err == nil, err
}

// diskStatus prints which generation each slot of the heph disk holds.
func diskStatus(e *env, path string) error {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer d.Close()
	fs, ds, err := builder.OpenESP(d)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	entries, err := builder.Entries(fs)
	if err != nil {
		return err
	}
	boots := nextBoot(entries)
	fmt.Fprintf(e.stdout, "%s: heph disk of %s\n", path, ds.Name)
	for _, slot := range builder.Slots {
		s := ds.Slots[slot]
		if s == nil {
			fmt.Fprintf(e.stdout, "slot %s: empty\n", slot)
			continue
		}
		state := "no loader entry"
		for _, en := range entries {
			if en.ID == s.Entry {
				state = entryState(en)
			}
		}
		next := ""
		if boots == s.Entry {
			next = ", boots next"
		}
		fmt.Fprintf(e.stdout, "slot %s: generation %d, %s%s: %s\n", slot, s.Generation, state, next, s.Toplevel)
	}
	return nil
}

func entryState(en builder.Entry) string {
	switch {
	case en.Good():
		return "good"
	case en.Bad():
		return fmt.Sprintf("bad (no tries left, %d failed)", en.TriesDone)
	}
	return fmt.Sprintf("on trial (%d tries left, %d used)", en.TriesLeft, en.TriesDone)
}

// nextBoot is the entry systemd-boot boots by default: the newest (by
// id, as it sorts) that still has tries.
func nextBoot(entries []builder.Entry) string {
	for i := len(entries) - 1; i >= 0; i-- {
		if !entries[i].Bad() {
			return entries[i].ID
		}
	}
	return ""
}

// deploySlot writes the toplevel p (files at dir) into the slot of the
// heph disk at target that is not the one running now (the newest good
// generation), as the next generation, with tries boots to pass its
// self-test; then reads the slot back and compares.
func deploySlot(e *env, target string, p store.Path, dir string, tries int) error {
	start := time.Now()
	d, err := diskfs.Open(target)
	if err != nil {
		return fmt.Errorf("opening %s to write: %w", target, err)
	}
	fs, ds, err := builder.OpenESP(d)
	if err != nil {
		d.Close()
		return fmt.Errorf("%s: %w", target, err)
	}
	entries, err := builder.Entries(fs)
	if err != nil {
		d.Close()
		return err
	}
	active, newest := "", 0
	best := 0
	for _, slot := range builder.Slots {
		s := ds.Slots[slot]
		if s == nil {
			continue
		}
		newest = max(newest, s.Generation)
		for _, en := range entries {
			if en.ID == s.Entry && en.Good() && s.Generation > best {
				active, best = slot, s.Generation
			}
		}
	}
	slot := "B"
	if active == "B" {
		slot = "A"
	}
	if tries == 0 {
		tries = max(ds.Tries, 1)
	}
	var need int64
	for _, f := range []string{"kernel", "initrd", "cmdline"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			d.Close()
			return fmt.Errorf("%s is not a system toplevel: %w", p, err)
		}
		need += fi.Size()
	}
	part, err := d.GetPartition(1)
	if err != nil {
		d.Close()
		return err
	}
	free, err := builder.ESPFree(fs, part.GetSize(), slot)
	if err != nil {
		d.Close()
		return err
	}
	if need > free {
		d.Close()
		return fmt.Errorf("%s is too small: slot %s needs %s, its ESP has room for %s (a disk with a larger espMiB); nothing was written", target, slot, store.FormatSize(need), store.FormatSize(max(free, 0)))
	}
	gen := newest + 1
	if err := builder.WriteSlot(fs, ds, slot, gen, dir, p.String(), tries); err != nil {
		d.Close()
		return fmt.Errorf("writing slot %s of %s: %w", slot, target, err)
	}
	if err := d.Close(); err != nil {
		return err
	}
	if err := syncPath(target); err != nil {
		return err
	}
	if err := verifySlot(target, slot, dir); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "deployed %s to %s: slot %s, generation %d, boots next with %d tries (entry %s+%d.conf); read back and compared, in %s\n",
		p, target, slot, gen, tries, builder.EntryID(gen, slot), tries, time.Since(start).Round(time.Millisecond))
	return nil
}

// verifySlot reads slot's files back from target and compares them.
func verifySlot(target, slot, dir string) error {
	dropCaches(target)
	d, err := diskfs.Open(target, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return err
	}
	defer d.Close()
	fs, _, err := builder.OpenESP(d)
	if err != nil {
		return fmt.Errorf("reading %s back: %w", target, err)
	}
	return compareSlot(fs, slot, dir)
}

func compareSlot(fs filesystem.FileSystem, slot, dir string) error {
	for _, f := range []string{"kernel", "initrd", "cmdline"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		got, err := builder.ReadFAT(fs, "/heph/"+slot+"/"+f)
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("reading back slot %s: /heph/%s/%s differs from what was written (%v)", slot, slot, f, err)
		}
	}
	return nil
}

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

// checkDeviceFree refuses the block device dev when it, or a partition of
// it, is mounted or holds /.
func checkDeviceFree(dev string) error {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return err
	}
	major, minor := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	name := ""
	if b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
				name = v
			}
		}
	}
	devs := map[string]bool{fmt.Sprintf("%d:%d", major, minor): true}
	if name != "" {
		ents, _ := os.ReadDir("/sys/class/block/" + name)
		for _, en := range ents {
			if b, err := os.ReadFile(filepath.Join("/sys/class/block", name, en.Name(), "dev")); err == nil {
				devs[strings.TrimSpace(string(b))] = true
			}
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
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

// OVMF, Debian's UEFI firmware for QEMU (apt-get install ovmf).
var (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// diskQemuArgs are QEMU's arguments to boot the disk image img under
// OVMF, with a copy of its variables in tmp; the disk is written to (the
// loader counts boots, the self-test marks entries good).
func diskQemuArgs(img, memory, tmp string) ([]string, error) {
	fi, err := os.Stat(img)
	if err != nil {
		return nil, fmt.Errorf("--disk: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--disk: %s is not a disk image file", img)
	}
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		return nil, fmt.Errorf("%w (install OVMF: apt-get install ovmf)", err)
	}
	if _, err := os.Stat(ovmfCode); err != nil {
		return nil, fmt.Errorf("%w (install OVMF: apt-get install ovmf)", err)
	}
	varsCopy := filepath.Join(tmp, "OVMF_VARS_4M.fd")
	if err := os.WriteFile(varsCopy, vars, 0o600); err != nil {
		return nil, err
	}
	return []string{
		"-accel", "tcg", // KVM hangs on the machines hephc is built on
		"-m", memory,
		"-nographic", "-no-reboot",
		"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,file=" + varsCopy,
		"-drive", "if=virtio,format=raw,file=" + img,
	}, nil
}

// bootDisk is hephc boot --disk FILE.
func bootDisk(e *env, fs *pflag.FlagSet, disk string, args []string) error {
	if len(args) > 0 || fs.Changed("profile") || fs.Changed("generation") || fs.Changed("append") {
		return usagef("--disk boots the disk image alone: no system, --profile, --generation or --append (the loader entry has the command line)")
	}
	memory, _ := fs.GetString("memory")
	tmp, err := os.MkdirTemp("", "hephc-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	qargs, err := diskQemuArgs(absPath(e.cwd, disk), memory, tmp)
	if err != nil {
		return err
	}
	return runQEMU(e, fs, qargs, qargs) // boot.go
}

// runDiskImage is hephc image --disk -A ATTR -o FILE: the #DiskImage that
// boots ATTR, realized, copied to FILE.
func runDiskImage(e *env, fs *pflag.FlagSet, args []string) error {
	attr, _ := fs.GetString("attr")
	out, _ := fs.GetString("output")
	for _, f := range []string{"to", "oci-layout", "docker-archive", "mount-from", "tag"} {
		if fs.Changed(f) {
			return usagef("--disk writes a disk image to -o: no --%s", f)
		}
	}
	if attr == "" || out == "" {
		return usagef("--disk wants -A ATTR and -o FILE")
	}
	st, ctx, done, err := lockedStore(e)
	if err != nil {
		return err
	}
	defer done()
	start := time.Now()
	p, err := realizeKind(ctx, e, st, attr, args, builtins.DiskImage)
	if err != nil {
		return err
	}
	took := time.Since(start)
	dst := absPath(e.cwd, out)
	src, err := os.Open(filepath.Join(st.Physical(p), builder.DiskFile))
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".hephc-disk-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	fmt.Fprintln(e.stdout, p)
	fmt.Fprintf(e.stderr, "disk image %s: %s, built in %s; boot it with hephc boot --disk %s\n", out, store.FormatSize(n), took.Round(time.Millisecond), out)
	return nil
}

// lockedStore opens the store and holds its GC lock shared (what is
// realized stays) until done; ctx ends on SIGINT or SIGTERM.
func lockedStore(e *env) (*store.Store, context.Context, func(), error) {
	st, err := openStore(e)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	gcLock, err := st.LockGC(ctx, false)
	if err != nil {
		stop()
		st.Close()
		return nil, nil, nil, err
	}
	return st, ctx, func() { gcLock.Unlock(); stop(); st.Close() }, nil
}
