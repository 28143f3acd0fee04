package pipeline

import (
	"os"
	"path/filepath"

	"hephc.dev/hephc/eval"
	"hephc.dev/hephc/lang"
	"hephc.dev/hephc/pins"
)

// checkPins checks the Go pins of g against the LockFile beside the
// configuration (pins.CheckLock: a version or sum changed by hand, deps
// that are not what hephc update resolved, each naming the hephc update
// command that fixes it), before anything is built. It returns the
// LockFile, when there is one, for the evaluation cache's dependencies.
func checkPins(cfg *lang.Config, g *eval.Graph) ([]string, error) {
	if err := pins.CheckLock(cfg.Dir, g); err != nil {
		return nil, err
	}
	lock := filepath.Join(cfg.Dir, pins.LockFile)
	if _, err := os.Stat(lock); err != nil {
		return nil, nil
	}
	return []string{lock}, nil
}
