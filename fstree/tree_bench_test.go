package fstree

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkHashTree measures HashTree on a warm page cache: "large" is a
// few big files (what one core's blake3 throughput bounds), "small" many
// small files in nested directories (what syscalls and the worker pool
// bound; it reports files/s too). Run with:
//
//	go test -run '^$' -bench BenchmarkHashTree -benchtime 5x ./fstree
func BenchmarkHashTree(b *testing.B) {
	b.Run("large", func(b *testing.B) {
		root := b.TempDir()
		size := benchLargeTree(b, root, 4, 64<<20)
		for _, workers := range []int{1, 0} {
			name := fmt.Sprintf("workers=%d", workers)
			if workers == 0 {
				name = "workers=all"
			}
			b.Run(name, func(b *testing.B) { benchHashTree(b, root, size, 4, workers) })
		}
	})
	b.Run("small", func(b *testing.B) {
		root := b.TempDir()
		const files = 20000
		size := benchSmallTree(b, root, files)
		for _, workers := range []int{1, 0} {
			name := fmt.Sprintf("workers=%d", workers)
			if workers == 0 {
				name = "workers=all"
			}
			b.Run(name, func(b *testing.B) { benchHashTree(b, root, size, files, workers) })
		}
	})
}

func benchHashTree(b *testing.B, root string, size int64, files, workers int) {
	benchHashTreeOpt(b, root, size, files, HashOptions{Workers: workers})
}

func benchHashTreeOpt(b *testing.B, root string, size int64, files int, opt HashOptions) {
	hashTree(b, root, opt) // warm the page cache and the code
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		info, err := HashTree(root, opt)
		if err != nil {
			b.Fatal(err)
		}
		if info.Size != size || info.Files != files {
			b.Fatalf("HashTree saw %d bytes in %d files, want %d in %d", info.Size, info.Files, size, files)
		}
	}
	b.ReportMetric(float64(files)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// benchLargeTree writes n files of size random bytes.
func benchLargeTree(b *testing.B, root string, n, size int) int64 {
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, size)
	for i := range n {
		r.Read(buf)
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("big%d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return int64(n) * int64(size)
}

// benchSmallTree writes n files of 1 to 8 KiB of random bytes, spread over
// two levels of directories.
func benchSmallTree(b *testing.B, root string, n int) int64 {
	r := rand.NewChaCha8([32]byte{2})
	buf := make([]byte, 8<<10)
	var total int64
	for i := range n {
		d := filepath.Join(root, fmt.Sprintf("%02x", i%32), fmt.Sprintf("%02x", i/32%32))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		size := 1<<10 + int(r.Uint64()%(7<<10+1))
		r.Read(buf[:size])
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf[:size], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(size)
	}
	return total
}
