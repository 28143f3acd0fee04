// Package depcheck holds the test that keeps the import directions of
// docs/design.md true; it has no code of its own.
package depcheck
