package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "log",
		args:    "DRV-HASH|STORE-PATH|./result",
		summary: "print the build log of a derivation",
		run:     runLog,
	})
}

// hashArg parses a derivation hash.
func hashArg(s string) (store.DrvHash, error) {
	if h, err := store.ParseDrvHash(s); err == nil {
		return h, nil
	}
	return store.DrvHash{}, usagef("%q is neither a derivation hash nor a store path", s)
}

func runLog(e *env, _ *pflag.FlagSet, args []string) error {
	if len(args) != 1 {
		return usagef("want one derivation hash or store path")
	}
	st, err := openStore(e)
	if err != nil {
		return err
	}
	defer st.Close()
	var h store.DrvHash
	p, perr := pathArg(e, st, args[0])
	var usage *usageError
	switch {
	case perr == nil:
		h = p.Hash
	case !errors.As(perr, &usage):
		return perr // e.g. no ./result here
	default:
		h, err = hashArg(args[0])
	}
	if err != nil {
		return err
	}
	f, err := os.Open(st.LogPath(h))
	if err != nil {
		return fmt.Errorf("no build log for %s in the store %s", args[0], st.Dir)
	}
	defer f.Close()
	_, err = io.Copy(e.stdout, f)
	return err
}
