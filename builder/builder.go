// Package builder holds hephc's built-in builders (the builtins table's).
// Each runs inside the build sandbox, in a process of its own: the sandbox
// starts this executable again and calls the builder registered under the
// name. A builder reads the derivation and its inputs from
// /.heph/build.json and writes $out.
package builder

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"hephc.dev/hephc/builtins"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/sandbox"
)

// register makes f the built-in builder name (one of the builtins table)
// in the sandbox, under its short name.
func register(name string, f sandbox.BuiltinFunc) {
	b, ok := builtins.Lookup(name)
	if !ok {
		panic("builder: " + name + " is not in the builtins table")
	}
	sandbox.RegisterBuiltin(b.Short(), f)
}

// readBuildInfo reads what the store tells a build about itself.
func readBuildInfo() (*realize.BuildInfo, error) {
	b, err := os.ReadFile(realize.BuildInfoPath)
	if err != nil {
		return nil, fmt.Errorf("reading the build description: %w", err)
	}
	var info realize.BuildInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("reading the build description %s: %w", realize.BuildInfoPath, err)
	}
	return &info, nil
}

// getenv looks KEY up in a KEY=VALUE environment.
func getenv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

func attr(info *realize.BuildInfo, key string) (string, error) {
	v, _ := info.Derivation.Attrs[key].(string)
	if v == "" {
		return "", fmt.Errorf("%s: attrs.%s is missing", info.Derivation.Builder, key)
	}
	return v, nil
}
