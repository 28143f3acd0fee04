package main

import (
	"bytes"
	"maps"
	"os"
	"strings"
	"testing"
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
