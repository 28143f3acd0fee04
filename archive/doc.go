// Package archive owns hephc's package archive: store paths as an OCI
// image layout, one reproducible layer per path with narinfo-like
// annotations and the path's attestations as referrers, written from a
// store (Export) and read back into one (Import) only when every path's
// bytes match their digests and a trust policy admits every path.
package archive
