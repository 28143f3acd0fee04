package registry

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, repo, tag string
		plain         bool
	}{
		{"oci://localhost:5000/heph", "localhost:5000/heph", "", true},
		{"oci://127.0.0.1:5000/org/age:v1.3.2", "127.0.0.1:5000/org/age", "v1.3.2", true},
		{"oci://[::1]:5000/heph", "[::1]:5000/heph", "", true},
		{"oci://ghcr.io/org/heph", "ghcr.io/org/heph", "", false},
		{"oci://10.0.0.7:5000/heph", "10.0.0.7:5000/heph", "", false},
		{"oci+http://10.0.0.7:5000/heph", "10.0.0.7:5000/heph", "", true},
	} {
		r, err := ParseRef(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if r.Repo.Name() != tc.repo || r.Tag != tc.tag || r.PlainHTTP != tc.plain {
			t.Errorf("%s: got %s %q plain %v, want %s %q plain %v", tc.in, r.Repo.Name(), r.Tag, r.PlainHTTP, tc.repo, tc.tag, tc.plain)
		}
		if r.String() != tc.in {
			t.Errorf("%s: String() = %s", tc.in, r.String())
		}
	}
	for _, bad := range []string{"localhost:5000/heph", "docker://localhost/x", "oci://localhost:5000", "oci:///heph", "oci://Local Host/x", "oci://h/UPPER"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

type recorder struct{ urls []string }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.urls = append(r.urls, req.URL.String())
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
}

// Plain HTTP goes only to a loopback registry or one the reference says
// oci+http:// of; every other request must use TLS.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	for _, tc := range []struct {
		ref, url string
		ok       bool
	}{
		{"oci://localhost:5000/x", "http://localhost:5000/v2/", true},
		{"oci://127.0.0.1:5000/x", "http://127.0.0.1:5000/v2/", true},
		{"oci://[::1]:5000/x", "http://[::1]:5000/v2/", true},
		{"oci://10.0.0.7:5000/x", "http://10.0.0.7:5000/v2/", false},
		{"oci://10.0.0.7:5000/x", "https://10.0.0.7:5000/v2/", true},
		{"oci://registry.example:5000/x", "http://registry.example:5000/v2/", false},
		// A token realm elsewhere, in plain HTTP: refused too.
		{"oci+http://10.0.0.7:5000/x", "http://10.0.0.8/token", false},
		{"oci+http://10.0.0.7:5000/x", "http://10.0.0.7:5000/v2/", true},
	} {
		ref, err := ParseRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		c := &Client{Transport: rec}
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		resp, err := c.transport(ref).RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		if ok := err == nil; ok != tc.ok {
			t.Errorf("%s → %s: error %v, want ok %v", tc.ref, tc.url, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "plain HTTP") {
			t.Errorf("%s → %s: %v", tc.ref, tc.url, err)
		}
		if !tc.ok && len(rec.urls) > 0 {
			t.Errorf("%s → %s: sent", tc.ref, tc.url)
		}
	}
}

// A registry that answers nothing at all is given up on after the stall
// timeout.
func TestStallTimeoutWaitingForAnswer(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	c := &Client{StallTimeout: 100 * time.Millisecond, Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-block:
			return nil, nil
		}
	})}
	ref, _ := ParseRef("oci://127.0.0.1:1/x")
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/v2/", nil)
	start := time.Now()
	_, err := c.transport(ref).RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "the registry sent nothing for 100ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An upload slower than the stall timeout goes on while its bytes move.
func TestStallTimeoutNotWhileSending(t *testing.T) {
	c := &Client{StallTimeout: 100 * time.Millisecond, Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		buf := make([]byte, 1)
		for {
			if _, err := req.Body.Read(buf); err != nil {
				break
			}
		}
		if err := req.Context().Err(); err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: 201, Body: http.NoBody, Request: req}, nil
	})}
	ref, _ := ParseRef("oci://127.0.0.1:1/x")
	body := &slowReader{n: 10, every: 40 * time.Millisecond} // 400 ms in all
	req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1:1/v2/x/blobs/uploads/1", body)
	resp, err := c.transport(ref).RoundTrip(req)
	if err != nil {
		t.Fatalf("a slow but moving upload: %v", err)
	}
	resp.Body.Close()
}

type slowReader struct {
	n     int
	every time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.every)
	r.n--
	p[0] = 'x'
	return 1, nil
}
