package builder

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hephc.dev/hephc/modfetch"
)

// hostileProxy serves, on 127.0.0.1, a body that never ends for every
// request (and with a lying, huge Content-Length if lie), and counts the
// bytes it managed to send.
func hostileProxy(t *testing.T, lie bool) (string, *atomic.Int64) {
	t.Helper()
	var sent atomic.Int64
	chunk := make([]byte, 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lie {
			w.Header().Set("Content-Length", fmt.Sprint(int64(1)<<40))
		}
		for {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &sent
}

func wantTooLarge(t *testing.T, err error, limit int64) {
	t.Helper()
	var tl *tooLargeError
	if !errors.As(err, &tl) || tl.limit != limit {
		t.Fatalf("got %v, want a download cut off at %d bytes", err, limit)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("fetch limit of %d bytes", limit)) || !strings.Contains(err.Error(), FetchLimitEnv) {
		t.Errorf("the error %q should name the limit and how to raise it", err)
	}
}

// TestFetchGoModCapsAHostileProxy: a proxy on 127.0.0.1 that sends a zip
// without end is cut off at the limit, before any hash is checked, and
// neither the file nor the transfer grows much past it.
func TestFetchGoModCapsAHostileProxy(t *testing.T) {
	url, sent := hostileProxy(t, false)
	dest := filepath.Join(t.TempDir(), "module.zip")
	const limit = 1 << 20
	start := time.Now()
	err := download(url, "example.com/m", "v1.0.0", dest, limit, io.Discard)
	wantTooLarge(t, err, limit)
	if !strings.Contains(err.Error(), "example.com/m@v1.0.0") {
		t.Errorf("the error %q should name the module", err)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Size() > limit+1 {
		t.Errorf("the download on disk: %v, %v; want at most %d bytes", fi.Size(), err, limit+1)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
	time.Sleep(50 * time.Millisecond)
	if s := sent.Load(); s > 64<<20 {
		t.Errorf("the proxy sent %d bytes before the fetch hung up", s)
	}
}

// TestFetchGoModRefusesAnnouncedSize: a Content-Length past the limit is
// refused before the body is read.
func TestFetchGoModRefusesAnnouncedSize(t *testing.T) {
	url, _ := hostileProxy(t, true)
	dest := filepath.Join(t.TempDir(), "module.zip")
	_, err := fetchURL(url+"/x.zip", dest, 1<<20)
	wantTooLarge(t, err, 1<<20)
	if !strings.Contains(err.Error(), "Content-Length") {
		t.Errorf("got %v, want the announced length named", err)
	}
}

func TestFetchURLCapsAFileProxy(t *testing.T) {
	src := filepath.Join(t.TempDir(), "big.zip")
	if err := os.WriteFile(src, make([]byte, 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "module.zip")
	_, err := fetchURL("file://"+src, dest, 1000)
	wantTooLarge(t, err, 1000)
	if n, err := fetchURL("file://"+src, filepath.Join(t.TempDir(), "ok.zip"), 3000); err != nil || n != 3000 {
		t.Errorf("at the limit: got %d, %v", n, err)
	}
}

// TestFetchGoModGraphCapsTheGraph: go.mod files count together against the
// limit, and a hostile endless go.mod is cut off at the go command's own
// limit on one file.
func TestFetchGoModGraphCapsTheGraph(t *testing.T) {
	gomod := []byte("module example.com/m\n\ngo 1.22\n" + strings.Repeat("// padding\n", 90))
	sum, err := modfetch.HashGoMod(gomod)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(gomod) }))
	t.Cleanup(srv.Close)
	budget := &fetchBudget{limit: int64(len(gomod))*2 + 10}
	s := modfetch.GoModSum{EscPath: "example.com/m", EscVersion: "v1.0.0", Sum: sum}
	for i := 0; i < 2; i++ {
		if _, err := fetchGoMod1(srv.URL, s, budget); err != nil {
			t.Fatalf("go.mod %d of 2: %v", i+1, err)
		}
	}
	_, err = fetchGoMod1(srv.URL, s, budget)
	wantTooLarge(t, err, budget.limit)

	url, sent := hostileProxy(t, false)
	_, err = fetchGoMod1(url, s, &fetchBudget{limit: 1 << 40})
	var tl *tooLargeError
	if !errors.As(err, &tl) || tl.limit != maxGoModSize {
		t.Fatalf("got %v, want a go.mod cut off at %d bytes", err, maxGoModSize)
	}
	time.Sleep(50 * time.Millisecond)
	if n := sent.Load(); n > 4*maxGoModSize {
		t.Errorf("the proxy sent %d bytes before the fetch hung up", n)
	}
}

func TestFetchLimitFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want int64
		err  bool
	}{
		{nil, 7, false},
		{[]string{FetchLimitEnv + "=1048576"}, 1 << 20, false},
		{[]string{FetchLimitEnv + "=0"}, 0, true},
		{[]string{FetchLimitEnv + "=-5"}, 0, true},
		{[]string{FetchLimitEnv + "=1MB"}, 0, true},
	} {
		got, err := fetchLimit(tc.env, 7)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%v: got %d, %v; want %d (error %v)", tc.env, got, err, tc.want, tc.err)
		}
	}
	if DefaultMaxZipBytes < 300<<20 {
		t.Errorf("DefaultMaxZipBytes %d is smaller than the Go toolchain's zip", DefaultMaxZipBytes)
	}
}
