package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// DefaultStallTimeout is how long a registry may send nothing, while
// answering or in the middle of a body, before the request fails.
const DefaultStallTimeout = 60 * time.Second

// guardedTransport refuses plain HTTP to registries that may not have it
// and fails a request whose registry stalls: nothing for stall, neither
// taking the request's body, nor answering, nor between two reads of the
// answer's body.
type guardedTransport struct {
	base http.RoundTripper
	// plainHTTP says whether a host may be spoken to in plain HTTP.
	plainHTTP func(host string) bool
	stall     time.Duration
}

// errStalled is a registry that sent nothing for the stall timeout.
var errStalled = errors.New("the registry sent nothing")

func (t *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !t.plainHTTP(req.URL.Host) {
		return nil, fmt.Errorf("plain HTTP to %s refused: only a registry on a loopback address is spoken to without TLS, unless its reference says oci+http://", req.URL.Host)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{stall: t.stall, cancel: cancel}
	w.arm()
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		// Sending is progress too: an upload may take longer than the
		// stall timeout.
		req.Body = &sendingBody{ReadCloser: req.Body, w: w}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		w.stop()
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			err = fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), cause)
		}
		cancel(nil)
		return nil, err
	}
	w.arm()
	resp.Body = &watchedBody{ReadCloser: resp.Body, w: w, ctx: ctx, done: cancel}
	return resp, nil
}

// watchdog cancels a request when it is not re-armed within stall.
type watchdog struct {
	stall  time.Duration
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	timer  *time.Timer
}

func (w *watchdog) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Reset(w.stall)
		return
	}
	w.timer = time.AfterFunc(w.stall, func() {
		w.cancel(fmt.Errorf("%w for %v", errStalled, w.stall))
	})
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// sendingBody re-arms its watchdog as the request's body is sent.
type sendingBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *sendingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.arm()
	}
	return n, err
}

// watchedBody re-arms its watchdog on every read and says when a read
// failed because the registry stalled.
type watchedBody struct {
	io.ReadCloser
	w    *watchdog
	ctx  context.Context
	done context.CancelCauseFunc
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.arm()
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, errStalled) {
			err = cause
		}
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.w.stop()
	err := b.ReadCloser.Close()
	b.done(nil)
	return err
}
