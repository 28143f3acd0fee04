// Package trust owns who vouches for a store path and whether that is
// enough: ed25519 keys and their files, in-toto statements about one
// store path's exact bytes signed in DSSE envelopes, the attestations a
// store keeps beside its paths, and the quorum a trust policy demands
// (distinct people, not keys). It imports nothing of hephc but srcpos and
// never CUE: policy compiles CUE into its Policy.
package trust
