package builder_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"

	"hephc.dev/hephc/builder"
)

// fakeSystem writes a toplevel (kernel, initrd, cmdline) and a loader.
func fakeSystem(t *testing.T, dir, tag string) (toplevel, loader string) {
	t.Helper()
	toplevel = filepath.Join(dir, "toplevel-"+tag)
	os.MkdirAll(toplevel, 0o755)
	os.WriteFile(filepath.Join(toplevel, "kernel"), bytes.Repeat([]byte("K"+tag), 300000), 0o644)
	os.WriteFile(filepath.Join(toplevel, "initrd"), bytes.Repeat([]byte("I"+tag), 500000), 0o644)
	os.WriteFile(filepath.Join(toplevel, "cmdline"), []byte("console=ttyS0 panic=-1\n"), 0o644)
	loader = filepath.Join(dir, "systemd-bootx64.efi")
	os.WriteFile(loader, []byte("MZ loader"), 0o644)
	return toplevel, loader
}

// TestWriteDiskIsDeterministic: two images of one spec are the same
// bytes; another seed changes the GUIDs only; the ESP holds the loader,
// loader.conf, slot A and its entry, and the state.
func TestWriteDiskIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	top, loader := fakeSystem(t, dir, "1")
	spec := builder.DiskSpec{Seed: "/heph/store/x-disk", Name: "ws", Toplevel: top, Loader: loader, ESPMiB: 64, DataMiB: 4, Tries: 3}
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	if err := builder.WriteDisk(a, spec); err != nil {
		t.Fatal(err)
	}
	if err := builder.WriteDisk(b, spec); err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if int64(len(ba)) != spec.DiskSize() || !bytes.Equal(ba, bb) {
		t.Fatalf("two images of one spec differ (sizes %d, %d)", len(ba), len(bb))
	}
	d, err := diskfs.Open(a, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, st, err := builder.OpenESP(d)
	if err != nil {
		t.Fatal(err)
	}
	if st.Slots["A"] == nil || st.Slots["A"].Generation != 1 || st.Slots["B"] != nil {
		t.Errorf("state %+v", st.Slots)
	}
	for name, want := range map[string]string{
		"/EFI/BOOT/BOOTX64.EFI":            "MZ loader",
		"/heph/A/cmdline":                  "console=ttyS0 panic=-1\n",
		"/loader/entries/heph-0001-A.conf": "title heph ws (generation 1, slot A)\nversion 1\nlinux /heph/A/kernel\ninitrd /heph/A/initrd\noptions console=ttyS0 panic=-1 heph.entry=heph-0001-A\n",
	} {
		got, err := builder.ReadFAT(fs, name)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	spec.Seed = "/heph/store/y-disk"
	c := filepath.Join(dir, "c.img")
	if err := builder.WriteDisk(c, spec); err != nil {
		t.Fatal(err)
	}
	bc, _ := os.ReadFile(c)
	if bytes.Equal(ba, bc) {
		t.Error("another seed, the same GUIDs")
	}
}

// TestWriteSlot: a second generation goes to slot B with tries; the slot's
// old entry goes.
func TestWriteSlot(t *testing.T) {
	dir := t.TempDir()
	top, loader := fakeSystem(t, dir, "1")
	top2, _ := fakeSystem(t, dir, "2")
	img := filepath.Join(dir, "a.img")
	if err := builder.WriteDisk(img, builder.DiskSpec{Seed: "s", Name: "ws", Toplevel: top, Loader: loader, ESPMiB: 64, DataMiB: 4, Tries: 3}); err != nil {
		t.Fatal(err)
	}
	for gen := 2; gen <= 3; gen++ {
		d, err := diskfs.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		fs, st, err := builder.OpenESP(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := builder.WriteSlot(fs, st, "B", gen, top2, "/heph/store/top2", 2); err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
	d, _ := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	defer d.Close()
	fs, st, err := builder.OpenESP(d)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := builder.Entries(fs)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.File)
	}
	if len(files) != 2 || files[0] != "heph-0001-A.conf" || files[1] != "heph-0003-B+2.conf" {
		t.Errorf("entries %v", files)
	}
	if st.Slots["B"].Generation != 3 || st.Slots["B"].Toplevel != "/heph/store/top2" {
		t.Errorf("slot B %+v", st.Slots["B"])
	}
	got, _ := builder.ReadFAT(fs, "/heph/B/kernel")
	want, _ := os.ReadFile(filepath.Join(top2, "kernel"))
	if !bytes.Equal(got, want) {
		t.Error("slot B's kernel differs")
	}
}

func TestParseEntry(t *testing.T) {
	for file, want := range map[string]builder.Entry{
		"heph-0002-B.conf":     {File: "heph-0002-B.conf", ID: "heph-0002-B"},
		"heph-0002-B+3.conf":   {File: "heph-0002-B+3.conf", ID: "heph-0002-B", Counting: true, TriesLeft: 3},
		"heph-0002-B+0-3.conf": {File: "heph-0002-B+0-3.conf", ID: "heph-0002-B", Counting: true, TriesDone: 3},
	} {
		got, ok := builder.ParseEntry(file)
		if !ok || got != want {
			t.Errorf("%s: %+v, %v", file, got, ok)
		}
	}
	if e, _ := builder.ParseEntry("heph-0002-B+0-3.conf"); !e.Bad() {
		t.Error("+0-3 is not bad")
	}
}
