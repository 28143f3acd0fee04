// Package registry keeps store paths in OCI registries, the binary cache
// any organisation already runs: Push writes each path of a closure as
// the archive's per-path artifact (its reproducible layer, the manifest
// of docs/trust.md, tagged with the path's hash) and its attestations as
// OCI 1.1 referrers; Substitute brings paths back into a store only when
// their bytes match their digests and content hash and every trust policy
// admits them, through store.Install, references first. It never imports
// CUE, eval, lang or policy: it is handed trust policies and store paths.
package registry
