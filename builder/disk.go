package builder

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"

	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"hephc.dev/hephc/builtins"
)

func init() { register(builtins.DiskImage, diskImage) }

// The layout of a heph disk (defs/disk.cue, #DiskImage).
const (
	// DiskFile is the image's name in the #DiskImage's output.
	DiskFile = "disk.img"
	// ESPName and DataName are the GPT partition names heph gives its EFI
	// system partition and its data partition; the image's self-test finds
	// the ESP by its name.
	ESPName  = "heph-esp"
	DataName = "heph-data"
	// StateFile is the ESP's record of what each slot holds: a disk without
	// it is not one of heph's.
	StateFile = "/loader/heph.json"
	espLabel  = "HEPH-ESP"
	mib       = 1 << 20
	sector    = 512
	// fatEpoch (1980-01-01T00:00:00Z) is the earliest time FAT can write:
	// every file of an image gets it (go-diskfs reads SOURCE_DATE_EPOCH).
	fatEpoch = "315532800"
)

// fatTimes makes every FAT entry go-diskfs writes from now on carry
// fatEpoch: go-diskfs takes a file's times from SOURCE_DATE_EPOCH, else
// the clock. Every writer of a heph disk calls it first (the builtin, a
// test, hephc deploy), so the bytes never depend on when they were made.
func fatTimes() { os.Setenv("SOURCE_DATE_EPOCH", fatEpoch) }

// Slots are the two slots of a heph disk.
var Slots = []string{"A", "B"}

// DiskState is loader/heph.json: which generation each slot holds.
type DiskState struct {
	Format int `json:"format"`
	// Name is the image's name (workstation).
	Name  string                `json:"name"`
	Tries int                   `json:"tries"`
	Slots map[string]*SlotState `json:"slots"`
}

// SlotState is one slot's generation.
type SlotState struct {
	Generation int    `json:"generation"`
	Toplevel   string `json:"toplevel"` // the store path it was written from
	Entry      string `json:"entry"`    // the loader entry's id (heph-0002-B)
}

// EntryID is a generation's loader entry id: systemd-boot sorts entries by
// id, newest version first, and puts those with no tries left last.
func EntryID(generation int, slot string) string {
	return fmt.Sprintf("heph-%04d-%s", generation, slot)
}

// diskImage builds a #DiskImage: $out/disk.img.
func diskImage(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	num := func(key string) (int, error) {
		v, ok := info.Derivation.Attrs[key]
		if !ok {
			return 0, fmt.Errorf("disk-image: attrs.%s is missing", key)
		}
		n, err := strconv.Atoi(fmt.Sprint(v))
		if err != nil || n < 1 {
			return 0, fmt.Errorf("disk-image: attrs.%s: want a positive number, got %v", key, v)
		}
		return n, nil
	}
	espMiB, err := num("espMiB")
	if err != nil {
		return err
	}
	dataMiB, err := num("dataMiB")
	if err != nil {
		return err
	}
	tries, err := num("tries")
	if err != nil {
		return err
	}
	loaderFile, err := attr(info, "loaderFile")
	if err != nil {
		return err
	}
	image, ok := info.Inputs["image"]
	if !ok {
		return errors.New("disk-image: no input image (an #Image)")
	}
	loader, ok := info.Inputs["loader"]
	if !ok {
		return errors.New("disk-image: no input loader (systemd-boot-efi, a #DebianPackage)")
	}
	if err := os.MkdirAll(info.Out, 0o755); err != nil {
		return err
	}
	spec := DiskSpec{
		Seed:     info.Out,
		Name:     image.Name,
		Toplevel: image.Path,
		Loader:   filepath.Join(loader.Path, loaderFile),
		ESPMiB:   espMiB,
		DataMiB:  dataMiB,
		Tries:    tries,
	}
	if err := WriteDisk(filepath.Join(info.Out, DiskFile), spec); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: GPT, %s (%d MiB, FAT32, systemd-boot, slot A: %s), %s (%d MiB)\n", DiskFile, ESPName, espMiB, image.Path, DataName, dataMiB)
	return nil
}

// DiskSpec says what WriteDisk writes.
type DiskSpec struct {
	Seed     string // the GUIDs are made from it (the output path: the derivation's hash)
	Name     string // the image's name
	Toplevel string // the system in slot A: kernel, initrd, cmdline
	Loader   string // systemd-bootx64.efi
	ESPMiB   int
	DataMiB  int
	Tries    int
}

// DiskSize is the size of a disk image of spec: 1 MiB for the GPT, the
// partitions, 1 MiB for the backup GPT.
func (s DiskSpec) DiskSize() int64 { return int64(1+s.ESPMiB+s.DataMiB+1) * mib }

// guid makes a GUID (version 4 and variant bits set) from seed and what.
func guid(seed, what string) string {
	h := sha256.Sum256([]byte("heph disk guid\x00" + seed + "\x00" + what))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// WriteDisk writes a heph disk image of spec at file, which must not exist.
func WriteDisk(file string, spec DiskSpec) error {
	fatTimes()
	loader, err := os.ReadFile(spec.Loader)
	if err != nil {
		return fmt.Errorf("the loader: %w", err)
	}
	if missing := slotMissing(spec.Toplevel); missing != "" {
		return fmt.Errorf("%s is not a system toplevel: it has no %s", spec.Toplevel, missing)
	}
	d, err := diskfs.Create(file, spec.DiskSize(), diskfs.SectorSizeDefault)
	if err != nil {
		return err
	}
	defer d.Close()
	espStart := uint64(mib / sector)
	espEnd := espStart + uint64(spec.ESPMiB)*mib/sector - 1
	dataStart := espEnd + 1
	dataEnd := dataStart + uint64(spec.DataMiB)*mib/sector - 1
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               guid(spec.Seed, "disk"),
		Partitions: []*gpt.Partition{
			{Index: 1, Start: espStart, End: espEnd, Type: gpt.EFISystemPartition, Name: ESPName, GUID: guid(spec.Seed, ESPName)},
			{Index: 2, Start: dataStart, End: dataEnd, Type: gpt.LinuxFilesystem, Name: DataName, GUID: guid(spec.Seed, DataName)},
		},
	}
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("writing the partition table: %w", err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: espLabel, Reproducible: true})
	if err != nil {
		return fmt.Errorf("making the ESP's FAT32: %w", err)
	}
	for _, dir := range []string{"/EFI/BOOT", "/loader/entries", "/heph/A", "/heph/B"} {
		if err := fs.Mkdir(dir); err != nil {
			return fmt.Errorf("ESP %s: %w", dir, err)
		}
	}
	if err := writeFAT(fs, "/EFI/BOOT/BOOTX64.EFI", loader); err != nil {
		return err
	}
	// timeout 0: the default boots at once; editor no: nobody at the
	// console changes the kernel's command line; no automatic entries.
	conf := "timeout 0\neditor no\nauto-entries no\nauto-firmware no\n"
	if err := writeFAT(fs, "/loader/loader.conf", []byte(conf)); err != nil {
		return err
	}
	st := &DiskState{Format: 1, Name: spec.Name, Tries: spec.Tries, Slots: map[string]*SlotState{}}
	// The first generation is good as written: there is nothing to fall
	// back to. Later ones are written with tries (WriteSlot).
	if err := WriteSlot(fs, st, "A", 1, spec.Toplevel, spec.Toplevel, 0); err != nil {
		return err
	}
	return nil
}

func slotMissing(toplevel string) string {
	for _, f := range []string{"kernel", "initrd", "cmdline"} {
		if _, err := os.Stat(filepath.Join(toplevel, f)); err != nil {
			return f
		}
	}
	return ""
}

// WriteSlot writes the system at toplevel (recorded as record, its store
// path) into slot of the ESP fs as generation gen, its loader entry with tries boots (0: good, no
// counting), and the state file; it first removes the slot's old entry.
func WriteSlot(fs filesystem.FileSystem, st *DiskState, slot string, gen int, toplevel, record string, tries int) error {
	fatTimes()
	if missing := slotMissing(toplevel); missing != "" {
		return fmt.Errorf("%s is not a system toplevel: it has no %s", toplevel, missing)
	}
	entries, err := Entries(fs)
	if err != nil {
		return err
	}
	id := EntryID(gen, slot)
	file := id + ".conf"
	if tries > 0 {
		file = fmt.Sprintf("%s+%d.conf", id, tries)
	}
	// The slot's old entry is renamed to the new one and rewritten (and
	// files are truncated, not removed: go-diskfs v1.9.4's Remove leaves
	// a FAT that goes wrong when the space is used again). It boots
	// nothing until its slot's files are written, then it boots them.
	renamed := false
	for _, e := range entries {
		if !strings.HasSuffix(e.ID, "-"+slot) {
			continue
		}
		if renamed {
			return fmt.Errorf("slot %s has two loader entries (%s): not a disk hephc wrote", slot, e.File)
		}
		if err := fs.Rename("/loader/entries/"+e.File, "/loader/entries/"+file); err != nil {
			return fmt.Errorf("renaming the old entry %s: %w", e.File, err)
		}
		renamed = true
	}
	delete(st.Slots, slot)
	for _, f := range []string{"kernel", "initrd", "cmdline"} {
		b, err := os.ReadFile(filepath.Join(toplevel, f))
		if err != nil {
			return err
		}
		if err := writeFAT(fs, "/heph/"+slot+"/"+f, b); err != nil {
			return err
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(toplevel, "cmdline"))
	if err != nil {
		return err
	}
	entry := fmt.Sprintf("title heph %s (generation %d, slot %s)\nversion %d\nlinux /heph/%s/kernel\ninitrd /heph/%s/initrd\noptions %s heph.entry=%s\n",
		st.Name, gen, slot, gen, slot, slot, strings.TrimSpace(string(cmdline)), id)
	if err := writeFAT(fs, "/loader/entries/"+file, []byte(entry)); err != nil {
		return err
	}
	st.Slots[slot] = &SlotState{Generation: gen, Toplevel: record, Entry: id}
	return WriteState(fs, st)
}

// WriteState writes st as the ESP's state file.
func WriteState(fs filesystem.FileSystem, st *DiskState) error {
	fatTimes()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFAT(fs, StateFile, append(b, '\n'))
}

// writeFAT writes b as the file name of fs, replacing its content.
func writeFAT(fs filesystem.FileSystem, name string, b []byte) error {
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("ESP %s: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("ESP %s: %w", name, err)
	}
	return f.Close()
}

// ReadFAT reads the file name of fs.
func ReadFAT(fs filesystem.FileSystem, name string) ([]byte, error) {
	f, err := fs.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Entry is a loader entry file of the ESP and its boot counter.
type Entry struct {
	File      string // heph-0002-B+1-2.conf
	ID        string // heph-0002-B
	Counting  bool   // it has a counter: not yet marked good
	TriesLeft int
	TriesDone int
}

// Good says whether the entry was marked good (or written so).
func (e Entry) Good() bool { return !e.Counting }

// Bad says whether the entry has no tries left: systemd-boot skips it.
func (e Entry) Bad() bool { return e.Counting && e.TriesLeft == 0 }

// ParseEntry reads a loader entry's file name (systemd-boot's boot
// counting: ID.conf, ID+LEFT.conf or ID+LEFT-DONE.conf).
func ParseEntry(file string) (Entry, bool) {
	base, ok := strings.CutSuffix(file, ".conf")
	if !ok {
		return Entry{}, false
	}
	e := Entry{File: file, ID: base}
	id, counter, ok := strings.Cut(base, "+")
	if !ok {
		return e, true
	}
	left, done, _ := strings.Cut(counter, "-")
	l, err := strconv.Atoi(left)
	if err != nil {
		return Entry{}, false
	}
	d := 0
	if done != "" {
		if d, err = strconv.Atoi(done); err != nil {
			return Entry{}, false
		}
	}
	return Entry{File: file, ID: id, Counting: true, TriesLeft: l, TriesDone: d}, true
}

// Entries lists the ESP's loader entries, by id.
func Entries(fs filesystem.FileSystem) ([]Entry, error) {
	ents, err := readDir(fs, "/loader/entries")
	if err != nil {
		return nil, fmt.Errorf("ESP /loader/entries: %w", err)
	}
	var out []Entry
	for _, de := range ents {
		if de.IsDir() {
			continue
		}
		if e, ok := ParseEntry(de.Name()); ok {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ErrNotHephDisk is a disk that is not one of heph's images.
var ErrNotHephDisk = errors.New("not a heph disk image")

// OpenESP returns the ESP of the heph disk d and its state, or an error
// wrapping ErrNotHephDisk.
func OpenESP(d *disk.Disk) (filesystem.FileSystem, *DiskState, error) {
	t, err := d.GetPartitionTable()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: no partition table (%v)", ErrNotHephDisk, err)
	}
	gt, ok := t.(*gpt.Table)
	if !ok || len(gt.Partitions) < 1 || gt.Partitions[0].Name != ESPName {
		return nil, nil, fmt.Errorf("%w: its first partition is not a GPT partition named %s", ErrNotHephDisk, ESPName)
	}
	fs, err := d.GetFilesystem(1)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: its %s holds no FAT file system (%v)", ErrNotHephDisk, ESPName, err)
	}
	b, err := ReadFAT(fs, StateFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: its ESP has no %s", ErrNotHephDisk, StateFile)
	}
	var st DiskState
	if err := json.Unmarshal(b, &st); err != nil || st.Format != 1 || st.Slots == nil {
		return nil, nil, fmt.Errorf("%w: its %s is not heph's (format 1)", ErrNotHephDisk, StateFile)
	}
	return fs, &st, nil
}

// ESPFree estimates the bytes the ESP fs of size espBytes has for a slot
// once slot's own files are gone: its size less the loader, the other
// slot and a margin for FAT tables and directories.
func ESPFree(fs filesystem.FileSystem, espBytes int64, slot string) (int64, error) {
	used := int64(0)
	err := walkFAT(fs, "/", func(p string, size int64) {
		if !strings.HasPrefix(p, "/heph/"+slot+"/") {
			used += size
		}
	})
	if err != nil {
		return 0, err
	}
	// FAT32 with 512-byte clusters: two FATs of 4 bytes per cluster.
	overhead := espBytes/512*8 + 2*mib
	return espBytes - overhead - used, nil
}

func walkFAT(fs filesystem.FileSystem, dir string, f func(p string, size int64)) error {
	ents, err := readDir(fs, dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		if de.Name() == "." || de.Name() == ".." {
			continue
		}
		p := path.Join(dir, de.Name())
		if de.IsDir() {
			if err := walkFAT(fs, p, f); err != nil {
				return err
			}
			continue
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		f(p, info.Size())
	}
	return nil
}

// readDir lists the directory p ("/a/b") of fs, whose ReadDir wants io/fs
// paths ("a/b", ".").
func readDir(fs filesystem.FileSystem, p string) ([]iofs.DirEntry, error) {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if p == "" {
		p = "."
	}
	return fs.ReadDir(p)
}
