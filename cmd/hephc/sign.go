package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/store"
	"hephc.dev/hephc/trust"
)

// BuilderID is the SLSA builder id of hephc's attestations.
const BuilderID = "https://hephc.dev/builder/v1"

func init() {
	register(&command{
		name:    "sign",
		args:    "[--key FILE] [--passphrase-file FILE] [--only] PATH… | --manifest DIR [--profile NAME] [--generation N]",
		summary: "attest store paths and their closure: an in-toto statement per path in a DSSE envelope, kept in the store",
		flags: func(fs *pflag.FlagSet) {
			fs.String("key", "", "the secret key file to sign with (default: the store owner's signingKey, in the store's "+OwnerConfigFile+")")
			fs.String("passphrase-file", "", "the key's passphrase, if it has one, is the first line of FILE")
			fs.Bool("only", false, "sign only the paths given, not their closure")
			fs.String("manifest", "", "write the manifest of a generation (every path of its closure and its content hash) to `DIR`/manifest.json, or check that DIR holds it already, and add a detached signature to DIR/signatures")
			fs.String("profile", "system", "with --manifest: the `NAME` of the generation's profile")
			fs.Int("generation", 0, "with --manifest: the generation `N` (default: the current one)")
		},
		run: runSign,
	})
}

func runSign(e *env, fs *pflag.FlagSet, args []string) error {
	keyFile, _ := fs.GetString("key")
	passFile, _ := fs.GetString("passphrase-file")
	only, _ := fs.GetBool("only")
	manifest, _ := fs.GetString("manifest")
	switch {
	case manifest != "" && len(args) > 0:
		return usagef("--manifest signs a generation's manifest: no store paths")
	case manifest == "" && len(args) == 0:
		return usagef("want at least one store path")
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	if keyFile == "" {
		owner, err := ownerConfig(e, st)
		if err != nil {
			return err
		}
		if owner.SigningKey == "" {
			return usagef("want --key FILE (the store's %s names no signingKey)", OwnerConfigFile)
		}
		keyFile = owner.SigningKey
	}
	k, err := readSecretKey(e, keyFile, passFile)
	if err != nil {
		return err
	}
	if manifest != "" {
		profileName, _ := fs.GetString("profile")
		gen, _ := fs.GetInt("generation")
		return signManifest(e, st, k, absPath(e.cwd, manifest), profileName, gen) // manifest.go
	}
	ctx := context.Background()
	paths, err := closureArgs(ctx, e, st, args, !only)
	if err != nil {
		return err
	}
	added := 0
	for _, p := range paths {
		ok, err := signPath(ctx, st, p, k)
		if err != nil {
			return err
		}
		if ok {
			added++
		}
	}
	fmt.Fprintf(e.stderr, "signed %d paths as %s (%s): %d new attestations\n", len(paths), k.Name, k.Public().ID(), added)
	return nil
}

// signPath attests that k's owner built p, as the store recorded it (at
// the time it was registered, so signing again gives the same envelope).
func signPath(ctx context.Context, st *store.Store, p store.Path, k *trust.SecretKey) (bool, error) {
	info, ok, err := st.QueryPathInfo(ctx, p)
	if err != nil {
		return false, err
	} else if !ok {
		return false, fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
	}
	return attestPath(ctx, st, k, trust.Built, p, time.Unix(info.Registered, 0))
}
