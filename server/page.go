package server

import (
	"bytes"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/trust"
)

// The web page (issue 19): what the server holds, for people. Plain HTML
// rendered on the server from embedded templates, usable without
// JavaScript and with a screen reader (landmarks, tables with headers
// and captions, labelled forms): the channels and their packages, days
// in testing and the date each can be promoted, the excuses, open
// issues, test results, signatures and reproductions per version, the
// threat reports and the metrics.
//
// Reading it needs a reader token unless Config.PublicPage: given as
// "Authorization: Bearer …" or through the login form, which keeps it in
// an HttpOnly, SameSite=Strict cookie (Secure over TLS). The cookie is
// the page's only: the API reads the Authorization header alone, so a
// cookie never authorizes a write. A token in a URL is refused, never
// read: it would be in logs, history and Referer headers.

//go:embed templates
var templateFS embed.FS

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"date":     func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"datetime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"short":    shortPath,
}).ParseFS(templateFS, "templates/*.html"))

// sessionCookie holds the token the login form was given.
const sessionCookie = "heph_session"

// pageCSP allows the page its own style sheet and form posts, nothing
// else: no script, no frames, no other origin.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// pageRoutes adds the page, its style sheet, the login form and the
// threat API to mux.
func (s *Server) pageRoutes(mux *http.ServeMux) {
	s.threatRoutes(mux)
	cop := http.NewCrossOriginProtection()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /page.css", func(w http.ResponseWriter, r *http.Request) {
		b, _ := templateFS.ReadFile("templates/page.css")
		pageHeaders(w)
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(b)
	})
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		if refuseURLToken(w, r) {
			return
		}
		s.render(w, http.StatusOK, "login.html", loginData{})
	})
	mux.Handle("POST /login", cop.Handler(http.HandlerFunc(s.login)))
	mux.Handle("POST /logout", cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})))
}

func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

// refuseURLToken answers 400 to a request whose URL carries anything
// like a token, and says so.
func refuseURLToken(w http.ResponseWriter, r *http.Request) bool {
	q := strings.ToLower(r.URL.RawQuery)
	if !strings.Contains(q, "token") && !strings.Contains(q, tokenPrefix) && !strings.Contains(strings.ToLower(r.URL.Path), tokenPrefix) {
		return false
	}
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintln(w, "A token is never read from a URL (it would stay in logs and history): use the login form or an Authorization header.")
	return true
}

// pageCaller is who reads the page: the Authorization header, else the
// login cookie.
func (s *Server) pageCaller(r *http.Request) (string, Role, bool) {
	if r.Header.Get("Authorization") != "" {
		return s.caller(r)
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", "", false
	}
	return s.Authenticate(r.Context(), c.Value)
}

type loginData struct {
	Failed bool
	Next   bool // the page needs a token
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if refuseURLToken(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		s.render(w, http.StatusBadRequest, "login.html", loginData{Failed: true})
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	who, role, ok := s.Authenticate(r.Context(), tok)
	if !ok || !role.Allows(Reader) {
		s.audit(nil, "anonymous "+remoteAddr(r), "log in to the page", "POST /login", "forbidden", "not a token")
		s.render(w, http.StatusForbidden, "login.html", loginData{Failed: true})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 60 * 60})
	s.audit(nil, who, "log in to the page", "POST /login", "ok", "")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if refuseURLToken(w, r) {
		return
	}
	who, role, ok := s.pageCaller(r)
	if !s.cfg.PublicPage && (!ok || !role.Allows(Reader)) {
		s.render(w, http.StatusUnauthorized, "login.html", loginData{Next: true, Failed: ok || r.Header.Get("Authorization") != ""})
		return
	}
	d, err := s.PageData(r.Context())
	if err != nil {
		http.Error(w, "reading the server's state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	d.Who = who
	s.render(w, http.StatusOK, "page.html", d)
}

// Page is what the page shows: the state at one moment.
type Page struct {
	Now      time.Time
	Who      string // the reader's token, if any
	After    string // the time in testing promotion needs
	Channels []PageChannel
	Waiting  []PageWaiting
	Versions []PageVersion
	Threats  *Threats
	Issues   *IssueStats
	Open     []*Issue
	// MaxClosed, MaxThreats scale the metrics' meters.
	MaxClosed, MaxThreats int
}

// PageChannel is one channel's packages.
type PageChannel struct {
	Name     string
	Version  int64
	Packages []PagePackage
}

// PagePackage is one package version in a channel.
type PagePackage struct {
	Attr, Version, PublishedBy string
	Paths                      int
	Since                      time.Time
	Days                       int
	OpenIssues                 int
}

// PageWaiting is a version waiting in testing: why it is not promoted.
type PageWaiting struct {
	Attr, Version string
	Days          int
	Promotable    time.Time // the day the time rule holds
	Evaluated     time.Time
	Excuses       []string
}

// PageVersion is one published version: its tests, signatures and
// reproductions, and issues.
type PageVersion struct {
	Attr, Version, Channel, PublishedBy string
	PublishedAt                         time.Time
	Tests                               []TestResult
	TestsError                          string
	Attestations                        []PageAttestation
	Issues                              []*Issue
}

// PageAttestation is one attestation the server holds of a path.
type PageAttestation struct {
	Path, Kind, Builder, Signers string
	Time                         time.Time
}

// pageVersions bounds the versions listed (the newest).
const pageVersions = 100

// PageData reads what the page shows in one read transaction, so a
// publish or promotion is seen whole or not at all.
func (s *Server) PageData(ctx context.Context) (*Page, error) {
	now := s.clock.Now().UTC()
	p := &Page{Now: now, After: s.cfg.Promotion.After.String()}
	if d := s.cfg.Promotion.After; d%(24*time.Hour) == 0 {
		p.After = fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	open, err := s.Issues(ctx, "", true)
	if err != nil {
		return nil, err
	}
	p.Open = open
	openBy := map[pkgKey][]*Issue{}
	for _, is := range open {
		k := pkgKey{is.Attr, is.Version}
		openBy[k] = append(openBy[k], is)
	}
	where := map[pkgKey]string{}
	// As a package moves: testing, stable, deprecated.
	for _, ch := range []string{channel.Testing, channel.Stable, channel.Deprecated} {
		v, es, err := content(ctx, tx, ch)
		if err != nil {
			return nil, err
		}
		pc := PageChannel{Name: ch, Version: v}
		keys, m := group(es)
		for _, k := range keys {
			es := m[k]
			since := es[0].Since
			for _, e := range es {
				if e.Since.Before(since) {
					since = e.Since
				}
			}
			where[k] = ch
			pc.Packages = append(pc.Packages, PagePackage{Attr: k.attr, Version: k.version, PublishedBy: es[0].PublishedBy,
				Paths: len(es), Since: since, Days: int(now.Sub(since) / (24 * time.Hour)), OpenIssues: len(openBy[k])})
			if ch == channel.Testing {
				w := PageWaiting{Attr: k.attr, Version: k.version, Days: int(now.Sub(since) / (24 * time.Hour)),
					Promotable: since.Add(s.cfg.Promotion.After)}
				var at int64
				var ex string
				err := tx.QueryRowContext(ctx, `SELECT at, excuses FROM decisions WHERE attr = ? AND version = ?`, k.attr, k.version).Scan(&at, &ex)
				switch {
				case err == sql.ErrNoRows:
					w.Excuses = []string{"not evaluated yet"}
				case err != nil:
					return nil, err
				default:
					w.Evaluated = fromUnix(at)
					if err := json.Unmarshal([]byte(ex), &w.Excuses); err != nil {
						return nil, err
					}
				}
				p.Waiting = append(p.Waiting, w)
			}
		}
		p.Channels = append(p.Channels, pc)
	}
	// The published versions, newest first.
	rows, err := tx.QueryContext(ctx, `SELECT attr, version, published_by, published_at FROM packages ORDER BY published_at DESC, attr, version LIMIT ?`, pageVersions)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v PageVersion
		var at int64
		if err := rows.Scan(&v.Attr, &v.Version, &v.PublishedBy, &at); err != nil {
			rows.Close()
			return nil, err
		}
		v.PublishedAt = fromUnix(at)
		v.Channel = where[pkgKey{v.Attr, v.Version}]
		if v.Channel == "" {
			v.Channel = "none"
		}
		v.Issues = openBy[pkgKey{v.Attr, v.Version}]
		p.Versions = append(p.Versions, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range p.Versions {
		if err := s.versionDetail(ctx, tx, &p.Versions[i], now); err != nil {
			return nil, err
		}
	}
	if p.Issues, err = s.IssueStats(ctx); err != nil {
		return nil, err
	}
	if p.Threats, err = s.Threats(ctx, 50); err != nil {
		return nil, err
	}
	for _, d := range p.Issues.ClosedPerDay {
		p.MaxClosed = max(p.MaxClosed, d.Count)
	}
	for _, d := range p.Threats.PerDay {
		p.MaxThreats = max(p.MaxThreats, d.Count)
	}
	return p, nil
}

// versionDetail adds a version's paths' attestations and its tests.
func (s *Server) versionDetail(ctx context.Context, tx *sql.Tx, v *PageVersion, now time.Time) error {
	rows, err := tx.QueryContext(ctx, `SELECT path FROM paths WHERE attr = ? AND version = ? ORDER BY path`, v.Attr, v.Version)
	if err != nil {
		return err
	}
	var paths []string
	for rows.Next() {
		var pth string
		if err := rows.Scan(&pth); err != nil {
			rows.Close()
			return err
		}
		paths = append(paths, pth)
	}
	rows.Close()
	policies := append(slices.Clone(s.cfg.Trust), s.cfg.Promotion.Stable...)
	for _, pth := range paths {
		_, envs, err := attestations(ctx, tx, pth)
		if err != nil {
			return err
		}
		for _, env := range envs {
			c, ids, err := trust.ReadClaim(env)
			if err != nil {
				continue // a test result or a kind this page does not list
			}
			a := PageAttestation{Path: pth, Kind: string(c.Kind), Builder: c.Builder, Time: c.Time}
			// Only envelopes with a valid signature by a policy's key
			// were kept (publish.go); name their people.
			var people []string
			for _, pol := range policies {
				ps, _ := pol.Signers(ids, now)
				for _, who := range ps {
					if !slices.Contains(people, who) {
						people = append(people, who)
					}
				}
			}
			slices.Sort(people)
			if len(people) == 0 {
				for _, id := range ids {
					people = append(people, string(id))
				}
			}
			a.Signers = strings.Join(people, ", ")
			v.Attestations = append(v.Attestations, a)
		}
	}
	res, err := s.cfg.Tests.Results(ctx, Package{Attr: v.Attr, Version: v.Version, Paths: paths})
	if err != nil {
		v.TestsError = err.Error()
	}
	v.Tests = res
	return nil
}

// shortPath is a store path's name with its hash cut to 8 characters.
func shortPath(p string) string {
	base := p[strings.LastIndex(p, "/")+1:]
	if h, name, ok := strings.Cut(base, "-"); ok && len(h) > 8 {
		return h[:8] + "…-" + name
	}
	return base
}
