package builder

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	modzip "golang.org/x/mod/zip"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/modfetch"
)

func init() { register(builtins.FetchGoModGraph, fetchGoModGraph) }

// fetchGoModGraphJobs is how many go.mod files are fetched at once.
const fetchGoModGraphJobs = 16

// fetchGoModGraph fetches the go.mod file of every module version whose
// "/go.mod h1:" sum the go.sum of input src lists, from the module proxies
// in GOPROXY, and checks each against that sum before anything is
// written. These are the files the go command reads to load src's module
// graph: for most of them it needs no zip. The output depends on go.sum
// alone; the store checks it against the pinned blake3 tree hash.
func fetchGoModGraph(args, env []string, stdout, stderr io.Writer) error {
	info, err := readBuildInfo()
	if err != nil {
		return err
	}
	src, ok := info.Inputs["src"]
	if !ok {
		return fmt.Errorf("fetch-gomod-graph: no input src (the module whose go.sum lists the go.mod files)")
	}
	f, err := os.Open(filepath.Join(src.Path, "go.sum"))
	if err != nil {
		return fmt.Errorf("fetch-gomod-graph: %w", err)
	}
	goSum, err := modfetch.ParseGoSum(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("fetch-gomod-graph: %s/go.sum: %w", src.Path, err)
	}
	sums := goSum.GoMods
	proxies := getenv(env, "GOPROXY")
	limit, err := fetchLimit(env, DefaultMaxGoModGraphBytes)
	if err != nil {
		return err
	}
	budget := &fetchBudget{limit: limit}
	fmt.Fprintf(stdout, "fetching %d go.mod files listed in %s's go.sum\n", len(sums), src.Name)
	start := time.Now()
	files := make([][]byte, len(sums))
	errs := make([]error, len(sums))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < fetchGoModGraphJobs; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				files[i], errs[i] = fetchGoMod1(proxies, sums[i], budget)
			}
		}()
	}
	for i := range sums {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fetch-gomod-graph: nothing was stored: %w", err)
	}
	var total int
	for i, s := range sums {
		p := filepath.Join(info.Out, modfetch.ModFilesDir, filepath.FromSlash(s.File()))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[i], 0o644); err != nil {
			return err
		}
		total += len(files[i])
	}
	fmt.Fprintf(stdout, "verified %d go.mod files (%d bytes) against go.sum in %.1fs\n", len(sums), total, time.Since(start).Seconds())
	return nil
}

// fetchGoMod1 fetches one go.mod file from the first proxy that has it
// (after "," only a 404 or 410 moves on, after "|" any error does),
// within budget, and checks it against its sum.
func fetchGoMod1(proxies string, s modfetch.GoModSum, budget *fetchBudget) ([]byte, error) {
	var b []byte
	err := fromProxies(proxies, func(base string) error {
		url := base + "/" + s.File()
		got, err := fetchBytes(url, budget)
		if err != nil {
			return err
		}
		sum, err := modfetch.HashGoMod(got)
		if err != nil {
			return err
		}
		if sum != s.Sum {
			return fmt.Errorf("%s: go.mod hash mismatch: go.sum says %s, %s served %s", s, s.Sum, url, sum)
		}
		b = got
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fetching the go.mod of %s: %w", s, err)
	}
	return b, nil
}

// maxGoModSize bounds a fetched go.mod file, as the go command does.
const maxGoModSize = modzip.MaxGoMod

// fetchBudget is what the go.mod files of one graph may hold together.
type fetchBudget struct {
	limit int64
	used  atomic.Int64
}

// read reads at most maxGoModSize bytes, and what is left of b, from r:
// past either it fails.
func (b *fetchBudget) read(url string, r io.Reader) ([]byte, error) {
	left := b.limit - b.used.Load()
	got, err := io.ReadAll(io.LimitReader(r, min(maxGoModSize, max(left, 0))+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if len(got) > maxGoModSize {
		return nil, &tooLargeError{what: url + " (a go.mod file; the go command takes none larger)", limit: maxGoModSize, fixed: true}
	}
	if b.used.Add(int64(len(got))) > b.limit {
		return nil, tooLarge("the go.mod files together", b.limit)
	}
	return got, nil
}

var goModClient = &http.Client{Timeout: 5 * time.Minute}

// fetchBytes gets a small file from an http(s) or file URL, within budget.
func fetchBytes(url string, budget *fetchBudget) ([]byte, error) {
	if path, ok := strings.CutPrefix(url, "file://"); ok {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", url, modfetch.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return budget.read(url, f)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * time.Second)
		}
		resp, err := goModClient.Get(url)
		if err != nil {
			lastErr = err
			continue
		}
		switch {
		case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %s: %w", url, resp.Status, modfetch.ErrNotFound)
		case resp.StatusCode != http.StatusOK:
			resp.Body.Close()
			lastErr = fmt.Errorf("%s: %s", url, resp.Status)
			if resp.StatusCode < 500 {
				return nil, lastErr
			}
			continue
		}
		b, err := budget.read(url, resp.Body)
		resp.Body.Close()
		var tl *tooLargeError
		switch {
		case errors.As(err, &tl):
			return nil, err
		case err != nil:
			lastErr = err
			continue
		}
		return b, nil
	}
	return nil, lastErr
}
