package main

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/server"
)

// What a server's own image needs of hephc serve (system.cue's
// images.server runs `hephc serve --init --boot-tokens /proc/cmdline
// --data DIR /etc/heph/server`): to make the server on its first start,
// and to take the tokens the machine was handed at boot.

// serveHostFlags are hephc serve's flags for a server's own image.
func serveHostFlags(fs *pflag.FlagSet) {
	fs.Bool("init", false, "serve: when the data directory holds no server, make it first as serve init does (the root keys in DATA/root-keys unless --offline-dir) and print its pins")
	fs.String("boot-tokens", "", "serve: adopt the tokens on the kernel command line in `FILE` (/proc/cmdline): heph.admin_token= as boot-admin (maintainer), heph.reporter_token= as boot-reporter (reporter); stored hashed, never printed")
}

// bootTokens are the kernel command line's parameters hephc serve
// --boot-tokens adopts: parameter, token name, role.
var bootTokens = []struct {
	param, name string
	role        server.Role
}{
	{"heph.admin_token", "boot-admin", server.Maintainer},
	{"heph.reporter_token", "boot-reporter", server.Reporter},
}

// serveInitIfNew runs serve init when --init is given and the data
// directory dir holds no server yet.
func serveInitIfNew(e *env, fs *pflag.FlagSet, dir string, args []string) error {
	if on, _ := fs.GetBool("init"); !on {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, server.DBFile)); !errors.Is(err, iofs.ErrNotExist) {
		return err // nil: there is a server
	}
	if !fs.Changed("offline-dir") {
		if err := fs.Set("offline-dir", filepath.Join(dir, "root-keys")); err != nil {
			return err
		}
	}
	return runServeInit(e, fs, args)
}

// adoptBootTokens adopts the tokens --boot-tokens names: each given
// parameter of the command line in that file.
func adoptBootTokens(ctx context.Context, e *env, fs *pflag.FlagSet, s *server.Server) error {
	file, _ := fs.GetString("boot-tokens")
	if file == "" {
		return nil
	}
	b, err := os.ReadFile(absPath(e.cwd, file))
	if err != nil {
		return fmt.Errorf("serve --boot-tokens: %w", err)
	}
	params := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			params[k] = v
		}
	}
	for _, t := range bootTokens {
		secret, ok := params[t.param]
		if !ok {
			continue
		}
		adopted, err := s.AdoptToken(ctx, "boot", t.name, t.role, secret)
		if err != nil {
			// The error names the parameter's token, never its secret.
			return fmt.Errorf("serve --boot-tokens: %s on %s: %w", t.param, file, err)
		}
		if adopted {
			fmt.Fprintf(e.stderr, "token %s (%s) adopted from %s on %s\n", t.name, t.role, t.param, file)
		}
	}
	return nil
}
