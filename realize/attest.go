package realize

import (
	"context"

	"hephc.dev/hephc/store"
)

// Attester vouches for what this store built and rebuilt: the CLI
// implements it with the store owner's signing key (package trust), so
// that realize imports no trust and the store no signatures. Each method
// is called once the path is valid; an error is the build's (the path
// stays valid).
type Attester interface {
	// Built attests that this store built info's path from its
	// derivation (after Realize installed it; not a substituted path).
	Built(ctx context.Context, info *store.PathInfo) error
	// Reproduced attests that a rebuild of info's path (CheckPath) gave
	// the content the store recorded.
	Reproduced(ctx context.Context, info *store.PathInfo) error
}
