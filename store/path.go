package store

import (
	"fmt"
	"strings"
)

// Dir is the logical store directory, the same on every machine. The
// physical store may live anywhere; builds see it mapped here.
const Dir = "/heph/store"

// MaxNameLen is the longest name a store path may carry.
const MaxNameLen = 200

// Path is a store path: Dir/<hash>-<name>.
type Path struct {
	Hash DrvHash
	Name string
}

// String returns /heph/store/<hash>-<name>.
func (p Path) String() string { return Dir + "/" + p.Base() }

// Base returns <hash>-<name>, the entry's name in the store directory.
func (p Path) Base() string { return p.Hash.String() + "-" + p.Name }

// ParsePath parses a store path, or its base name <hash>-<name>.
func ParsePath(s string) (Path, error) {
	base := strings.TrimPrefix(s, Dir+"/")
	if strings.Contains(base, "/") {
		return Path{}, fmt.Errorf("parsing store path %q: not in %s", s, Dir)
	}
	if len(base) < HashStringLen+2 || base[HashStringLen] != '-' {
		return Path{}, fmt.Errorf("parsing store path %q: want %s/<hash>-<name>", s, Dir)
	}
	h, err := ParseDrvHash(base[:HashStringLen])
	if err != nil {
		return Path{}, fmt.Errorf("parsing store path %q: %w", s, err)
	}
	name := base[HashStringLen+1:]
	if err := CheckName(name); err != nil {
		return Path{}, fmt.Errorf("parsing store path %q: %w", s, err)
	}
	return Path{Hash: h, Name: name}, nil
}

// CheckName reports whether name may be the name of a store path: 1 to 200
// bytes of [A-Za-z0-9+._?=-], not starting with a dot, without "..". The
// schema says the same (defs: #Name); this is the check for code that does
// not come through CUE.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("invalid store name: empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("invalid store name %q: %d bytes, at most %d", name, len(name), MaxNameLen)
	case name[0] == '.':
		return fmt.Errorf("invalid store name %q: starts with '.'", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("invalid store name %q: contains \"..\"", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+._?=-", c) >= 0) {
			return fmt.Errorf("invalid store name %q: byte %q at %d is not one of A-Z a-z 0-9 + . _ ? = -", name, c, i)
		}
	}
	return nil
}
