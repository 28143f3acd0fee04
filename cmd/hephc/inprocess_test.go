package main

import (
	"bytes"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// inProcess runs hephc commands in this process, in the directory cwd,
// each against the store it names. env overrides the process's
// environment (a key set to "" hides it).
type inProcess struct {
	t   *testing.T
	cwd string
	env map[string]string
}

// with is c with vars added to its environment.
func (c *inProcess) with(vars map[string]string) *inProcess {
	env := maps.Clone(c.env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, vars)
	return &inProcess{t: c.t, cwd: c.cwd, env: env}
}

func (c *inProcess) getenv(k string) string {
	if v, ok := c.env[k]; ok {
		return v
	}
	return os.Getenv(k)
}

// run runs hephc --store store ARGS.
func (c *inProcess) run(store string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	en := &env{stdout: &o, stderr: &e, cwd: c.cwd, getenv: c.getenv, store: store}
	code = run(en, append([]string{"--store", store}, args...))
	return code, o.String(), e.String()
}

// must runs hephc and fails the test unless it succeeds.
func (c *inProcess) must(store string, args ...string) (stdout, stderr string) {
	c.t.Helper()
	code, o, e := c.run(store, args...)
	if code != 0 {
		c.t.Fatalf("hephc %s: exit %d\n%s", strings.Join(args, " "), code, e)
	}
	return o, e
}

// refused runs hephc and reports an error unless it fails saying want;
// it returns what it said.
func (c *inProcess) refused(store, want string, args ...string) string {
	c.t.Helper()
	code, _, e := c.run(store, args...)
	if code == 0 || !strings.Contains(e, want) {
		c.t.Errorf("hephc %s: exit %d, want an error saying %q:\n%s", strings.Join(args, " "), code, want, e)
	}
	return e
}

// serveFixture is what the tests of hephc serve share: a directory with
// alice's key pair (alice.key, alice.pub), hephc run in it with no
// server variables from the environment, and go-containerregistry's
// registry in this process.
type serveFixture struct {
	dir, registry string // registry: HOST/heph
	cli           *inProcess
	pub           string // alice's public key
}

func newServeFixture(t *testing.T, store string) *serveFixture {
	t.Helper()
	reg := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	dir := t.TempDir()
	f := &serveFixture{dir: dir, registry: strings.TrimPrefix(reg.URL, "http://") + "/heph",
		cli: &inProcess{t: t, cwd: dir, env: map[string]string{TokenEnv: "", ServerCertificateEnv: "", ServerDataEnv: "", ServerClockEnv: ""}}}
	f.cli.must(store, "key", "generate", "--name", "alice", "--dir", dir)
	pub, err := os.ReadFile(filepath.Join(dir, "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	f.pub = strings.TrimSpace(string(pub))
	return f
}

// config is a configuration (package system) whose server: (at line 5)
// listens on 127.0.0.1, keeps its packages in the fixture's registry and
// holds server's lines; its trust policy asks alice's signature; rest
// follows.
func (f *serveFixture) config(server, rest string) string {
	return "package system\n\nimport \"hephc.dev/heph\"\n\nserver: heph.#Server & {\n\tlisten:   \"127.0.0.1:0\"\n\tregistry: \"oci://" + f.registry + "\"\n" + server +
		"}\n\npolicy: heph.#Policy & {trust: {\n\tpeople: alice: keys: [{key: \"" + f.pub + "\"}]\n\trules: [{signatures: 1}]\n}}\n" + rest
}

// write writes the configuration config makes to dir/name.
func (f *serveFixture) write(name, server, rest string) {
	f.cli.t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(f.dir, name)), 0o755); err != nil {
		f.cli.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(f.config(server, rest)), 0o644); err != nil {
		f.cli.t.Fatal(err)
	}
}
