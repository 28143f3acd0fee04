package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/server"
	"hephc.dev/hephc/store"
)

// TokenEnv holds a package server token (never a command-line value,
// which ps shows).
const TokenEnv = "HEPHC_TOKEN"

// ServerCertificateEnv pins the server's certificate when
// --certificate is not given.
const ServerCertificateEnv = "HEPHC_SERVER_CERTIFICATE"

func init() {
	register(&command{
		name:    "channels",
		args:    "--server URL [--json] | rollback --server URL CHANNEL",
		summary: "the package server's channels: what each holds, since when, and why what waits in testing is not promoted yet (rollback: a channel's previous content, as a new version)",
		flags: func(fs *pflag.FlagSet) {
			clientFlags(fs)
			fs.Bool("json", false, "print the channels as the server's JSON")
			fs.Bool("paths", false, "list every store path, not one line per package version")
			fs.String("reason", "", "rollback: why (kept in the history)")
		},
		run: runChannels,
	})
}

// clientFlags are the flags of the commands that talk to a server.
func clientFlags(fs *pflag.FlagSet) {
	fs.String("server", "", "the package server, https://HOST:PORT")
	fs.String("certificate", "", "pin the server's TLS certificate, sha256:HEX as serve init prints it (env "+ServerCertificateEnv+"; else the system's CAs verify it)")
	fs.String("token-file", "", "read the token from this file (else env "+TokenEnv+")")
}

// serverClient returns a client of --server, pinned to the certificate
// cert (--certificate, else HEPHC_SERVER_CERTIFICATE, else pin), with the
// token of --token-file or HEPHC_TOKEN.
func serverClient(e *env, fs *pflag.FlagSet, base, pin string) (*server.Client, error) {
	if base == "" {
		base, _ = fs.GetString("server")
	}
	if base == "" {
		return nil, usagef("want --server https://HOST:PORT")
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, usagef("--server %q: want https://HOST:PORT", base)
	}
	if c, _ := fs.GetString("certificate"); c != "" {
		pin = c
	} else if c := e.getenv(ServerCertificateEnv); c != "" {
		pin = c
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if pin != "" {
		if !strings.HasPrefix(pin, "sha256:") || len(pin) != len("sha256:")+64 {
			return nil, usagef("certificate %q: want sha256: and 64 hex digits, as hephc serve init prints it", pin)
		}
		tr.TLSClientConfig = &tls.Config{
			// The pin replaces the CAs: the leaf must be the one pinned.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the server sent no certificate")
				}
				if got := certFingerprint(cs.PeerCertificates[0].Raw); got != pin {
					return fmt.Errorf("the server's certificate is %s, not the one pinned (%s): refused", got, pin)
				}
				return nil
			},
		}
	}
	token := e.getenv(TokenEnv)
	if f, _ := fs.GetString("token-file"); f != "" {
		b, err := os.ReadFile(absPath(e.cwd, f))
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	return &server.Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}, nil
}

// serverError says what the server answered plainly: a refusal with its
// status and reasons, one a line.
func serverError(c *server.Client, err error) error {
	var ae *server.APIError
	if !errors.As(err, &ae) {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return fmt.Errorf("%w (pin the certificate hephc serve init printed: --certificate or %s)", err, ServerCertificateEnv)
		}
		return err
	}
	var b strings.Builder
	switch ae.Status {
	case http.StatusForbidden:
		fmt.Fprintf(&b, "%s refused (403 forbidden): %s", c.Base, ae.Message)
		if c.Token == "" {
			fmt.Fprintf(&b, " (no token given: set %s or --token-file)", TokenEnv)
		}
	default:
		fmt.Fprintf(&b, "%s: %s (%d %s)", c.Base, ae.Message, ae.Status, http.StatusText(ae.Status))
	}
	for _, r := range ae.Reasons {
		if !strings.Contains(ae.Message, r) {
			fmt.Fprintf(&b, "\n  %s", r)
		}
	}
	return errors.New(b.String())
}

func runChannels(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) > 0 && args[0] == "rollback" {
		return runChannelRollback(e, fs, args[1:])
	}
	if len(args) > 0 {
		return usagef("unexpected %q", args[0])
	}
	c, err := serverClient(e, fs, "", "")
	if err != nil {
		return err
	}
	chs, err := c.Channels(context.Background())
	if err != nil {
		return serverError(c, err)
	}
	if j, _ := fs.GetBool("json"); j {
		b, err := json.MarshalIndent(chs, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	paths, _ := fs.GetBool("paths")
	for _, ch := range chs {
		printChannel(e, ch, paths)
	}
	return nil
}

// printChannel prints one channel: one line per package version (each
// path with paths), and what waits with its excuses.
func printChannel(e *env, ch server.ChannelView, paths bool) {
	fmt.Fprintf(e.stdout, "%s (version %d)", ch.Name, ch.Version)
	if len(ch.Entries) == 0 {
		fmt.Fprint(e.stdout, ": empty")
	}
	fmt.Fprintln(e.stdout)
	type pv struct{ attr, version string }
	var order []pv
	groups := map[pv][]channel.Entry{}
	for _, en := range ch.Entries {
		k := pv{en.Attr, en.Version}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], en)
	}
	for _, k := range order {
		es := groups[k]
		fmt.Fprintf(e.stdout, "  %s %s: %d paths, since %s, published by %s\n", k.attr, k.version, len(es), es[0].Since.UTC().Format(time.RFC3339), es[0].PublishedBy)
		if paths {
			for _, en := range es {
				fmt.Fprintf(e.stdout, "    %s %s\n", en.Manifest, en.Path)
			}
		}
	}
	for _, d := range ch.Waiting {
		if d.Promoted {
			continue
		}
		fmt.Fprintf(e.stdout, "  waiting: %s %s (judged %s):\n", d.Attr, d.Version, d.At.UTC().Format(time.RFC3339))
		for _, x := range d.Excuses {
			fmt.Fprintf(e.stdout, "    %s\n", x)
		}
	}
}

func runChannelRollback(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) != 1 || !channel.Valid(args[0]) {
		return usagef("want rollback CHANNEL (testing, stable or deprecated)")
	}
	c, err := serverClient(e, fs, "", "")
	if err != nil {
		return err
	}
	reason, _ := fs.GetString("reason")
	v, err := c.Rollback(context.Background(), args[0], reason)
	if err != nil {
		return serverError(c, err)
	}
	fmt.Fprintf(e.stderr, "rolled %s back to its previous content, as version %d\n", args[0], v)
	return nil
}

// channelFlags are realize's flags for installing from a package
// server's channel.
func channelFlags(fs *pflag.FlagSet) {
	clientFlags(fs)
	fs.String("channel", "", "with --server: install only from this channel (by default each path from the channel its derivation's meta.channel names, stable when not set)")
	fs.String("root-hash", "", "with --server: the root of its channel metadata, sha256:HEX, instead of server.rootHash")
}

// channelFrom is what realize --server substitutes from: the server's
// registry, admitting each path only from the verified channel its
// derivation names.
type channelFrom struct {
	caches []registry.Ref
	client *registry.Client // reaches the server's registry
	only   string           // --channel: every path from it, or none
	vd     *channel.Verified
	// of is each missing path's channel: its derivation's meta.channel
	// (stable when not set), and the derivation.
	of map[store.Path]drvChannel
}

type drvChannel struct{ channel, drv string }

// channelsOf records the channel each of hs names, for admitFunc.
func (c *channelFrom) channelsOf(cwd string, g *eval.Graph, sg *store.Graph, hs []store.DrvHash) {
	c.of = map[store.Path]drvChannel{}
	for _, h := range hs {
		ch := eval.DefaultChannel
		if n := g.Nodes[h]; n != nil && n.Meta.Channel != "" {
			ch = n.Meta.Channel
		}
		p, o := sg.PathOf(h), sg.Origins[h]
		drv := p.String()
		if o.Attr != "" {
			drv += " (" + o.Attr
			if o.Pos.IsValid() {
				drv += ", " + o.Pos.RelTo(cwd).String()
			}
			drv += ")"
		}
		c.of[p] = drvChannel{ch, drv}
	}
}

// admitFunc admits a path only with the manifest the channel its
// derivation names holds.
func (c *channelFrom) admitFunc() func(store.Path, string) error {
	if c == nil {
		return nil
	}
	return func(p store.Path, manifest string) error {
		want, ok := c.of[p]
		if !ok {
			return fmt.Errorf("%s is not a path of the configuration", p)
		}
		ch := want.channel
		if c.only != "" && ch != c.only {
			return fmt.Errorf("%s says meta.channel: %q, not --channel %s: not installed", want.drv, ch, c.only)
		}
		if _, held := c.vd.Manifests(ch)[p.String()]; held {
			_, err := c.vd.Admit(ch, p.String(), manifest)
			return err
		}
		var in []string
		for _, other := range channel.Names {
			if _, held := c.vd.Manifests(other)[p.String()]; held {
				in = append(in, fmt.Sprintf("%s (version %d)", other, c.vd.Versions[other]))
			}
		}
		where := "no channel holds it"
		if len(in) > 0 {
			where = "it is in " + strings.Join(in, ", ")
		}
		return fmt.Errorf("%s is installed from channel %s only (its meta.channel), and %s (version %d) does not hold it; %s",
			want.drv, ch, ch, c.vd.Versions[ch], where)
	}
}

// SeenDir is the directory of a store's directory that keeps, per
// server root, the highest version of each channel document accepted.
const SeenDir = "channels"

// channelSource verifies the channel metadata of realize's --server
// (nil when not given) against the pins of the configuration's server:
// (or --root-hash, --certificate), every document, before anything is
// substituted; a document at a lower version than one this store
// accepted before is refused.
func channelSource(ctx context.Context, e *env, fs *pflag.FlagSet, st *store.Store, args []string) (*channelFrom, error) {
	base, _ := fs.GetString("server")
	if base == "" {
		if fs.Changed("channel") {
			return nil, usagef("--channel needs --server")
		}
		return nil, nil
	}
	if off, _ := fs.GetBool("no-substitute"); off {
		return nil, usagef("--server installs only what the channel holds: not with --no-substitute")
	}
	name, _ := fs.GetString("channel")
	if name != "" && !channel.Valid(name) {
		return nil, usagef("--channel %q: want testing, stable or deprecated", name)
	}
	spec, err := loadServerSpec(e, nil, args)
	if err != nil {
		return nil, err
	}
	rootHash, _ := fs.GetString("root-hash")
	if rootHash == "" {
		rootHash = spec.RootHash
	}
	if rootHash == "" {
		return nil, spec.errorf("rootHash is not set: pin the root hash hephc serve init printed (or give --root-hash); nothing is installed from an unpinned server")
	}
	c, err := serverClient(e, fs, base, spec.Certificate)
	if err != nil {
		return nil, err
	}
	v := channel.NewVerifier(rootHash, time.Now)
	sum := sha256.Sum256([]byte(rootHash))
	seen := filepath.Join(st.Dir, SeenDir, hex.EncodeToString(sum[:8])+".json")
	if err := v.LoadSeen(seen); err != nil {
		return nil, err
	}
	vd, err := c.Verified(ctx, v)
	if err != nil {
		if _, ok := err.(*server.APIError); ok {
			return nil, serverError(c, err)
		}
		return nil, fmt.Errorf("%s: its channel metadata is refused, nothing installed: %w", c.Base, err)
	}
	if err := os.MkdirAll(filepath.Dir(seen), 0o755); err != nil {
		return nil, err
	}
	if err := v.SaveSeen(seen); err != nil {
		return nil, err
	}
	h, err := c.Health(ctx)
	if err != nil {
		return nil, serverError(c, err)
	}
	if h.Registry == "" {
		return nil, fmt.Errorf("%s names no registry to substitute from", c.Base)
	}
	ref, rc, err := serverRegistry(c, h.Registry)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Base, err)
	}
	var held []string
	for _, ch := range channel.Names {
		held = append(held, fmt.Sprintf("%s version %d holds %d paths", ch, vd.Versions[ch], len(vd.Manifests(ch))))
	}
	only := "each path only from the channel its derivation names (meta.channel, stable when not set)"
	if name != "" {
		only = "only what " + name + " holds, for derivations whose meta.channel is " + name
	}
	fmt.Fprintf(e.stderr, "verified %s's channels (root %s): %s; installing %s, from %s\n",
		c.Base, rootHash, strings.Join(held, ", "), only, ref)
	return &channelFrom{caches: []registry.Ref{ref}, client: rc, only: name, vd: vd}, nil
}
