package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hephc.dev/hephc/builder"
	"hephc.dev/hephc/imagetest"
	"hephc.dev/hephc/policy"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// imageTestTail is how many console lines a failed image test shows.
const imageTestTail = 25

// imageTestRun is the outcome of one image test's boot.
type imageTestRun struct {
	res  builder.TestResult
	took time.Duration
	fail *realize.BuildError // the failed step, with the console's tail
}

// runImageTest runs one image test. Its error is not the test's failure
// (that is in fail) but a failure to run it or keep its result.
func runImageTest(ctx context.Context, st *store.Store, sg *store.Graph, t *policy.Test) (*imageTestRun, error) {
	image := sg.PathOf(t.Of[0])
	var transcript bytes.Buffer
	start := time.Now()
	cfg, err := toplevelConfig(st.Physical(image), image.String(), t.Image.Memory, "") // boot.go
	if err != nil {
		return nil, err
	}
	passed, err := imagetest.Boot(ctx, cfg, *t.Image, &transcript)
	r := &imageTestRun{took: time.Since(start), res: builder.TestResult{Result: trust.TestPassed, Passed: passed, Failed: []string{}, Skipped: []string{}}}
	logPath := st.LogPath(t.Hash)
	if werr := writeLog(logPath, transcript.Bytes()); werr != nil {
		return nil, werr
	}
	if err != nil {
		var se *imagetest.StepError
		origin := store.Origin{Attr: t.Attr, Pos: t.Pos}
		failed := t.Drv.Name
		if errors.As(err, &se) {
			origin.Pos = se.Step.Pos
			failed = fmt.Sprintf("%d: %s", se.Index+1, se.Step)
		} else if ctx.Err() != nil {
			return nil, err
		}
		r.res.Result, r.res.Failed = trust.TestFailed, []string{failed}
		r.fail = &realize.BuildError{Drv: t.Hash, Path: t.Path(), Origin: origin, LogPath: logPath, LogTail: tailLines(transcript.String(), imageTestTail), Err: err}
		return r, nil
	}
	// The result, as builtin:go-test writes it, and the transcript.
	dir, err := st.TempDir("build-image-test-")
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(struct {
		builder.TestResult
		QEMU string `json:"qemu"`
	}{r.res, imagetest.QEMUVersion()}, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, builder.TestResultFile), append(b, '\n'), 0o444)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "log"), transcript.Bytes(), 0o444)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	_, err = st.Install(ctx, store.InstallRequest{Path: t.Path(), Source: dir, References: []store.Path{image}, Deriver: t.Hash})
	return r, err
}

// writeLog keeps a test's console transcript where realize keeps a
// build's log (hephc log shows it).
func writeLog(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// tailLines is the last n lines of a console transcript.
func tailLines(s string, n int) []string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
