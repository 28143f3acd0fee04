// Package pkgimage makes a package's OCI image from a store: its
// closure's paths as layers — each the archive's reproducible layer of
// one path, so that an image and a binary cache share blobs — merged
// into at most MaxLayers by a fixed rule, and a config whose PATH is the
// package's bin/. The same closure gives the same image, byte for byte,
// in every store. It never imports CUE, eval, lang or policy.
package pkgimage
