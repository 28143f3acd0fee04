package pins

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/licensecheck"
)

// DetectLicense returns the SPDX identifier of the license of the module
// extracted at dir when its license files name exactly one license and
// nearly all of their text is that license's; "" otherwise.
func DetectLicense(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var ids []string
	for _, e := range ents {
		n := strings.ToUpper(e.Name())
		if e.IsDir() || !(strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") || strings.HasPrefix(n, "COPYING")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || len(b) > 1<<20 {
			continue
		}
		cov := licensecheck.Scan(b)
		if cov.Percent < 90 {
			return ""
		}
		for _, m := range cov.Match {
			ids = append(ids, m.ID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) != 1 {
		return ""
	}
	return ids[0]
}
