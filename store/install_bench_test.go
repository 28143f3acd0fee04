package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"hephc.dev/hephc/store"
)

// BenchmarkInstall installs small paths (three files each), one op per
// path, with the store's syncfs before each registration and with syncs
// made no-ops: the difference is what durability costs an install on the
// file system of $TMPDIR (a group sync shares one between concurrent
// installs; here they are sequential, the worst case).
func BenchmarkInstall(b *testing.B) {
	for _, sync := range []string{"syncfs", "none"} {
		b.Run("sync="+sync, func(b *testing.B) {
			ctx := context.Background()
			st, err := store.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if sync == "none" {
				st.SyncFS = func() error { return nil }
			}
			i := 0
			before := cpuTime()
			for b.Loop() {
				b.StopTimer()
				tmp, err := st.TempDir("add-bench-")
				if err != nil {
					b.Fatal(err)
				}
				out := filepath.Join(tmp, "out")
				os.MkdirAll(filepath.Join(out, "bin"), 0o755)
				for _, f := range []string{"a", "b", "bin/c"} {
					if err := os.WriteFile(filepath.Join(out, f), []byte(fmt.Sprintf("%s %d", f, i)), 0o644); err != nil {
						b.Fatal(err)
					}
				}
				p := store.Path{Hash: store.HashDerivation(fmt.Appendf(nil, "p%d", i)), Name: "p"}
				i++
				b.StartTimer()
				if _, err := st.Install(ctx, store.InstallRequest{Path: p, Source: out}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.Remove(tmp)
				b.StartTimer()
			}
			// Staging is in it too: the difference between runs is
			// what says something.
			b.ReportMetric(float64((cpuTime()-before).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
