package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"hephc.dev/hephc/channel"
)

// Client calls a package server's API: what the CLI's publish, channels,
// issue, promote and realize --server use.
type Client struct {
	// Base is the server's URL, https://host:port.
	Base string
	// Token is the bearer token ("" for anonymous reads).
	Token string
	// HTTP is the client to use (its TLS configuration pins the
	// server's certificate); nil: http.DefaultClient.
	HTTP *http.Client
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("package server: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("package server: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("package server: %s %s: %w", method, path, err)
	}
	return nil
}

// Publish puts a package version into testing.
func (c *Client) Publish(ctx context.Context, req PublishRequest) error {
	return c.do(ctx, http.MethodPost, "/api/v1/publish", req, nil)
}

// AddAttestations sends more attestations of a published path.
func (c *Client) AddAttestations(ctx context.Context, path string, envs [][]byte) (int, error) {
	var out struct {
		Kept int `json:"kept"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/attestations", AttestationsRequest{Path: path, Envelopes: envs}, &out)
	return out.Kept, err
}

// AddTestResults sends test-result attestations (a test run again).
func (c *Client) AddTestResults(ctx context.Context, envs [][]byte) (int, error) {
	var out struct {
		Kept int `json:"kept"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/tests", TestsRequest{Envelopes: envs}, &out)
	return out.Kept, err
}

// Channels returns the channels with the excuses of what waits.
func (c *Client) Channels(ctx context.Context) ([]ChannelView, error) {
	var out []ChannelView
	return out, c.do(ctx, http.MethodGet, "/api/v1/channels", nil, &out)
}

// History returns the promotions, deprecations and rollbacks.
func (c *Client) History(ctx context.Context) ([]HistoryEntry, error) {
	var out []HistoryEntry
	return out, c.do(ctx, http.MethodGet, "/api/v1/history", nil, &out)
}

// Metadata returns the signed channel metadata; verify it with a
// channel.Verifier before using any of it.
func (c *Client) Metadata(ctx context.Context) (*channel.Repo, error) {
	var out channel.Repo
	return &out, c.do(ctx, http.MethodGet, "/api/v1/metadata", nil, &out)
}

// Verified fetches the channel metadata and verifies it with v.
func (c *Client) Verified(ctx context.Context, v *channel.Verifier) (*channel.Verified, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	return v.Verify(m)
}

// OpenIssue opens an issue against a package version and returns its id.
func (c *Client) OpenIssue(ctx context.Context, attr, version, title string) (int64, error) {
	var out struct {
		ID int64 `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/issues", IssueRequest{Attr: attr, Version: version, Title: title}, &out)
	return out.ID, err
}

// CommentIssue comments on an issue.
func (c *Client) CommentIssue(ctx context.Context, id int64, text string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/issues/"+strconv.FormatInt(id, 10)+"/comments", CommentRequest{Text: text}, nil)
}

// CloseIssue closes an issue, with a comment when text is not empty.
func (c *Client) CloseIssue(ctx context.Context, id int64, text string) error {
	return c.do(ctx, http.MethodPost, "/api/v1/issues/"+strconv.FormatInt(id, 10)+"/close", CommentRequest{Text: text}, nil)
}

// Issues lists the issues of attr ("" for all), only the open ones when open.
func (c *Client) Issues(ctx context.Context, attr string, open bool) ([]*Issue, error) {
	q := url.Values{}
	if attr != "" {
		q.Set("attr", attr)
	}
	if open {
		q.Set("open", "1")
	}
	var out []*Issue
	p := "/api/v1/issues"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// IssueStats returns the issue counts.
func (c *Client) IssueStats(ctx context.Context) (*IssueStats, error) {
	var out IssueStats
	return &out, c.do(ctx, http.MethodGet, "/api/v1/issues/stats", nil, &out)
}

// Promote promotes a package version by hand, where the rules allow.
func (c *Client) Promote(ctx context.Context, attr, version, reason string) (*Decision, error) {
	var out Decision
	return &out, c.do(ctx, http.MethodPost, "/api/v1/promote", PromoteRequest{Attr: attr, Version: version, Reason: reason}, &out)
}

// Rollback re-publishes a channel's previous content as a new version,
// which it returns.
func (c *Client) Rollback(ctx context.Context, ch, reason string) (int64, error) {
	var out struct {
		Version int64 `json:"version"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/rollback", RollbackRequest{Channel: ch, Reason: reason}, &out)
	return out.Version, err
}

// Audit returns the audit log (maintainer).
func (c *Client) Audit(ctx context.Context) ([]AuditEntry, error) {
	var out []AuditEntry
	return out, c.do(ctx, http.MethodGet, "/api/v1/audit", nil, &out)
}

// Health returns the server's health.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var out Health
	return &out, c.do(ctx, http.MethodGet, "/health", nil, &out)
}
