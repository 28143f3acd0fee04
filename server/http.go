package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"hephc.dev/hephc/channel"
)

// maxBody bounds a request's JSON body (a publish carries envelopes).
const maxBody = 64 << 20

// Handler is the JSON API over HTTP, TLS or not (the CLI serves it over
// TLS). A write needs a bearer token of its role; a request without it is
// answered 403 and written in the audit log. Routes (docs/server.md):
//
//	GET  /health
//	GET  /tuf/{role}.json                 root, N.root, targets, snapshot, timestamp, testing, stable, deprecated
//	GET  /api/v1/metadata                 every signed document at once (channel.Repo)
//	GET  /api/v1/channels                 channels, entries, excuses of what waits
//	GET  /api/v1/history
//	GET  /api/v1/audit                    maintainer
//	GET  /api/v1/issues[?attr=A&open=1]   GET /api/v1/issues/{id}   GET /api/v1/issues/stats
//	POST /api/v1/publish                  publisher
//	POST /api/v1/attestations             publisher
//	POST /api/v1/tests                    publisher
//	POST /api/v1/issues                   reporter
//	POST /api/v1/issues/{id}/comments     reporter
//	POST /api/v1/issues/{id}/close        reporter (its own), maintainer
//	POST /api/v1/promote                  maintainer
//	POST /api/v1/rollback                 maintainer
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /tuf/{doc}", s.read(s.tufDoc))
	mux.HandleFunc("GET /api/v1/metadata", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		m, err := s.Metadata(r.Context())
		reply(w, m, err)
	}))
	mux.HandleFunc("GET /api/v1/channels", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		cs, err := s.Channels(r.Context())
		reply(w, cs, err)
	}))
	mux.HandleFunc("GET /api/v1/history", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		h, err := s.History(r.Context())
		reply(w, h, err)
	}))
	mux.HandleFunc("GET /api/v1/issues", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		is, err := s.Issues(r.Context(), r.URL.Query().Get("attr"), r.URL.Query().Get("open") == "1")
		reply(w, is, err)
	}))
	mux.HandleFunc("GET /api/v1/issues/stats", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		st, err := s.IssueStats(r.Context())
		reply(w, st, err)
	}))
	mux.HandleFunc("GET /api/v1/issues/{id}", s.read(func(w http.ResponseWriter, r *http.Request, _ string) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil {
			reply(w, nil, badRequest("issue id %q is not a number", r.PathValue("id")))
			return
		}
		is, err := getIssue(r.Context(), s.db, id)
		reply(w, is, err)
	}))
	mux.HandleFunc("GET /api/v1/audit", s.need(Maintainer, "read the audit log", func(w http.ResponseWriter, r *http.Request, _ string, _ Role) {
		a, err := s.Audit(r.Context())
		reply(w, a, err)
	}))
	mux.HandleFunc("POST /api/v1/publish", s.need(Publisher, "publish", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		var req PublishRequest
		if !decode(w, r, &req) {
			return
		}
		err := s.Publish(r.Context(), who, req)
		reply(w, map[string]string{"published": req.Attr + " " + req.Version}, err)
	}))
	mux.HandleFunc("POST /api/v1/attestations", s.need(Publisher, "add attestations", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		var req AttestationsRequest
		if !decode(w, r, &req) {
			return
		}
		n, err := s.AddAttestations(r.Context(), who, req.Path, req.Envelopes)
		reply(w, map[string]int{"kept": n}, err)
	}))
	mux.HandleFunc("POST /api/v1/tests", s.need(Publisher, "add test results", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		var req TestsRequest
		if !decode(w, r, &req) {
			return
		}
		n, err := s.AddTestResults(r.Context(), who, req.Envelopes)
		reply(w, map[string]int{"kept": n}, err)
	}))
	mux.HandleFunc("POST /api/v1/issues", s.need(Reporter, "open an issue", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		var req IssueRequest
		if !decode(w, r, &req) {
			return
		}
		id, err := s.OpenIssue(r.Context(), who, req.Attr, req.Version, req.Title)
		reply(w, map[string]int64{"id": id}, err)
	}))
	mux.HandleFunc("POST /api/v1/issues/{id}/comments", s.need(Reporter, "comment on an issue", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		var req CommentRequest
		if err != nil {
			reply(w, nil, badRequest("issue id %q is not a number", r.PathValue("id")))
			return
		}
		if !decode(w, r, &req) {
			return
		}
		reply(w, map[string]int64{"id": id}, s.CommentIssue(r.Context(), who, id, req.Text))
	}))
	mux.HandleFunc("POST /api/v1/issues/{id}/close", s.need(Reporter, "close an issue", func(w http.ResponseWriter, r *http.Request, who string, role Role) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		var req CommentRequest
		if err != nil {
			reply(w, nil, badRequest("issue id %q is not a number", r.PathValue("id")))
			return
		}
		if !decode(w, r, &req) {
			return
		}
		reply(w, map[string]int64{"id": id}, s.CloseIssue(r.Context(), who, role.Allows(Maintainer), id, req.Text))
	}))
	mux.HandleFunc("POST /api/v1/promote", s.need(Maintainer, "promote", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		var req PromoteRequest
		if !decode(w, r, &req) {
			return
		}
		d, err := s.Promote(r.Context(), who, req.Attr, req.Version, req.Reason)
		reply(w, d, err)
	}))
	mux.HandleFunc("POST /api/v1/rollback", s.need(Maintainer, "roll back a channel", func(w http.ResponseWriter, r *http.Request, who string, _ Role) {
		var req RollbackRequest
		if !decode(w, r, &req) {
			return
		}
		v, err := s.Rollback(r.Context(), who, req.Channel, req.Reason)
		reply(w, map[string]any{"channel": req.Channel, "version": v}, err)
	}))
	s.pageRoutes(mux) // page.go, threat.go: the web page, threat reports
	return mux
}

// The request bodies.
type (
	AttestationsRequest struct {
		Path      string   `json:"path"`
		Envelopes [][]byte `json:"envelopes"`
	}
	TestsRequest struct {
		Envelopes [][]byte `json:"envelopes"`
	}
	IssueRequest struct {
		Attr    string `json:"attr"`
		Version string `json:"version"`
		Title   string `json:"title"`
	}
	CommentRequest struct {
		Text string `json:"text"`
	}
	PromoteRequest struct {
		Attr    string `json:"attr"`
		Version string `json:"version"`
		Reason  string `json:"reason"`
	}
	RollbackRequest struct {
		Channel string `json:"channel"`
		Reason  string `json:"reason"`
	}
)

// Health is what GET /health answers.
type Health struct {
	OK       bool             `json:"ok"`
	Versions map[string]int64 `json:"versions"`
	// Expiring are the offline documents that expire within 30 days:
	// the root keys' holders must re-sign them.
	Expiring []string `json:"expiring,omitempty"`
	// Registry is where the packages' OCI artifacts are (Config.RegistryName).
	Registry string `json:"registry,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	m, err := s.Metadata(r.Context())
	if err != nil {
		reply(w, nil, err)
		return
	}
	v, err := m.Versions()
	reply(w, &Health{OK: err == nil, Versions: v, Expiring: m.Expiring(s.clock.Now(), 30*24*60*60*1e9), Registry: s.cfg.RegistryName}, err)
}

func (s *Server) tufDoc(w http.ResponseWriter, r *http.Request, _ string) {
	role, ok := strings.CutSuffix(r.PathValue("doc"), ".json")
	m, err := s.Metadata(r.Context())
	if err != nil {
		reply(w, nil, err)
		return
	}
	var b []byte
	switch {
	case !ok:
	case role == "root":
		b = m.Root
	case strings.HasSuffix(role, ".root"):
		// N.root.json, as TUF clients fetch each root version.
		n, err := strconv.Atoi(strings.TrimSuffix(role, ".root"))
		switch {
		case err != nil || n < 1:
		case n <= len(m.Roots):
			b = m.Roots[n-1]
		case n == len(m.Roots)+1:
			b = m.Root
		}
	case role == "targets":
		b = m.Targets
	case role == "snapshot":
		b = m.Snapshot
	case role == "timestamp":
		b = m.Timestamp
	case channel.Valid(role):
		b = m.Channels[role]
	}
	if b == nil {
		reply(w, nil, &NotFoundError{What: "/tuf/" + r.PathValue("doc")})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

// caller returns who the request's bearer token is, if any.
func (s *Server) caller(r *http.Request) (string, Role, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", "", false
	}
	return s.Authenticate(r.Context(), strings.TrimSpace(tok))
}

// read serves a read: open to all unless Config.PrivateReads.
func (s *Server) read(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	if !s.cfg.PrivateReads {
		return func(w http.ResponseWriter, r *http.Request) { h(w, r, "") }
	}
	return s.need(Reader, "read", func(w http.ResponseWriter, r *http.Request, who string, _ Role) { h(w, r, who) })
}

// need serves a request only to a token whose role allows need; any
// other is answered 403 and logged.
func (s *Server) need(need Role, action string, h func(http.ResponseWriter, *http.Request, string, Role)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, role, ok := s.caller(r)
		if !ok || !role.Allows(need) {
			err := &ForbiddenError{Who: who, Action: action, Need: string(need)}
			if ok {
				err.Who = who + " (" + string(role) + ")"
			}
			logged := who
			if !ok {
				logged = "anonymous " + remoteAddr(r)
			}
			s.audit(nil, logged, action, r.Method+" "+r.URL.Path, "forbidden", err.Error())
			reply(w, nil, err)
			return
		}
		h(w, r, who, role)
	}
}

func remoteAddr(r *http.Request) string {
	if r.RemoteAddr == "" {
		return "(unknown address)"
	}
	return "from " + r.RemoteAddr
}

type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &badRequestError{fmt.Sprintf(format, args...)}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		reply(w, nil, badRequest("request body: %v", err))
		return false
	}
	return true
}

// APIError is the body of every error answer.
type APIError struct {
	Status  int      `json:"-"`
	Message string   `json:"error"`
	Reasons []string `json:"reasons,omitempty"`
}

func (e *APIError) Error() string {
	if len(e.Reasons) > 0 && !strings.Contains(e.Message, e.Reasons[0]) {
		return e.Message + ": " + strings.Join(e.Reasons, "; ")
	}
	return e.Message
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		status := http.StatusInternalServerError
		body := &APIError{Message: err.Error()}
		var (
			fe *ForbiddenError
			re *RefusedError
			nf *NotFoundError
			br *badRequestError
		)
		switch {
		case errors.As(err, &fe):
			status = http.StatusForbidden
		case errors.As(err, &re):
			status = http.StatusConflict
			body.Reasons = re.Reasons
		case errors.As(err, &nf):
			status = http.StatusNotFound
		case errors.As(err, &br):
			status = http.StatusBadRequest
		}
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
		return
	}
	json.NewEncoder(w).Encode(v)
}
