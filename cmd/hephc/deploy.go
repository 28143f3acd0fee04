package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/spf13/pflag"

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
