// Package fstree owns file trees as the store keeps them: their canonical
// hash (HashTree), their canonical read-only form (Canonicalize), copying
// (CopyTree), removing even read-only trees, one or many at once
// (RemoveTree, Remover), swapping one for another in one step (Exchange),
// and a reproducible tar form (WriteTar) read back refusing hostile input
// (ExtractTar). It knows nothing of store paths or derivations and imports
// nothing of hephc; the store finds references through its Scanner.
package fstree
