package archive

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hephc.dev/hephc/trust"
)

func TestImportRefusals(t *testing.T) {
	src := newStore(t)
	ps := sample(t, src)
	signAll(t, src, ps, "alice", "bob")
	good := export(t, src, ps)

	t.Run("k-1 signatures", func(t *testing.T) {
		dst := newStore(t)
		before := storeState(t, dst)
		_, err := importInto(t, dst, good, policy(t, 3))
		if !IsRefused(err) || !strings.Contains(err.Error(), "2 of 3 signatures: alice, bob built or reproduced it; missing any 1 of carol") {
			t.Fatalf("got %v", err)
		}
		if storeState(t, dst) != before {
			t.Fatal("the store changed")
		}
	})
	t.Run("no policy", func(t *testing.T) {
		if _, err := importInto(t, newStore(t), good); err == nil || !strings.Contains(err.Error(), "no trust policy") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		dir := copyDir(t, good)
		// Re-sign a statement with carol's key but claim bob's key id.
		rewriteEnvelopes(t, dir, func(env map[string]any) {
			sigs := env["signatures"].([]any)
			sig := sigs[0].(map[string]any)
			b := []byte(sig["sig"].(string))
			b[5] ^= 1
			sig["sig"] = string(b)
		})
		dst := newStore(t)
		_, err := importInto(t, dst, dir, policy(t, 1))
		if !IsRefused(err) || !strings.Contains(err.Error(), "bad signature") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing reference", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "oci")
		if _, err := Export(context.Background(), src, ps[:1], dir, ExportOptions{Attestations: trust.StoreDir(src.Dir)}); err != nil {
			t.Fatal(err)
		}
		_, err := importInto(t, newStore(t), dir, policy(t, 1))
		if !IsRefused(err) || !strings.Contains(err.Error(), "neither in the archive nor in the store") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("layer digest mismatch", func(t *testing.T) {
		dir := copyDir(t, good)
		a, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		blob := filepath.Join(dir, "blobs", "sha256", a.Entries[0].Layer.Digest.Hex)
		b, _ := os.ReadFile(blob)
		b[len(b)/2] ^= 0xff
		os.Chmod(blob, 0o644)
		os.WriteFile(blob, b, 0o644)
		dst := newStore(t)
		before := storeState(t, dst)
		_, err = importInto(t, dst, dir, policy(t, 2))
		if !IsRefused(err) {
			t.Fatalf("got %v, want a refusal", err)
		}
		if storeState(t, dst) != before {
			t.Fatal("the store changed")
		}
		if tmp, _ := os.ReadDir(filepath.Join(dst.Dir, "tmp")); len(tmp) != 0 {
			t.Fatalf("left in tmp: %v", tmp)
		}
	})
	t.Run("truncated archive", func(t *testing.T) {
		dir := copyDir(t, good)
		a, _ := Open(dir)
		os.Remove(filepath.Join(dir, "blobs", "sha256", a.Entries[1].Manifest.Digest.Hex))
		if _, err := importInto(t, newStore(t), dir, policy(t, 2)); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("manifest changed", func(t *testing.T) {
		dir := copyDir(t, good)
		a, _ := Open(dir)
		blob := filepath.Join(dir, "blobs", "sha256", a.Entries[0].Manifest.Digest.Hex)
		b, _ := os.ReadFile(blob)
		os.Chmod(blob, 0o644)
		os.WriteFile(blob, []byte(strings.Replace(string(b), `"dev.hephc.store.size":"`, `"dev.hephc.store.size":"1`, 1)), 0o644)
		_, err := importInto(t, newStore(t), dir, policy(t, 2))
		if !IsRefused(err) || !strings.Contains(err.Error(), "its descriptor says") {
			t.Fatalf("got %v", err)
		}
	})
}

func copyDir(t testing.TB, src string) string {
	dst := filepath.Join(t.TempDir(), "copy")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, strings.TrimPrefix(p, src))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// rewriteEnvelopes changes every envelope of the layout in dir with f and
// fixes up the digests that name it, as an attacker would.
func rewriteEnvelopes(t testing.TB, dir string, f func(map[string]any)) {
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_ = a
	var idx map[string]any
	ib, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	json.Unmarshal(ib, &idx)
	for _, d := range idx["manifests"].([]any) {
		desc := d.(map[string]any)
		if desc["artifactType"] != EnvelopeMediaType {
			continue
		}
		mb := readBlobFile(t, dir, desc["digest"].(string))
		var m map[string]any
		json.Unmarshal(mb, &m)
		layer := m["layers"].([]any)[0].(map[string]any)
		var env map[string]any
		json.Unmarshal(readBlobFile(t, dir, layer["digest"].(string)), &env)
		f(env)
		eb, _ := json.Marshal(env)
		layer["digest"], layer["size"] = writeBlobFile(t, dir, eb), len(eb)
		mb, _ = json.Marshal(m)
		desc["digest"], desc["size"] = writeBlobFile(t, dir, mb), len(mb)
	}
	ib, _ = json.Marshal(idx)
	os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644)
}

func readBlobFile(t testing.TB, dir, digest string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeBlobFile(t testing.TB, dir string, b []byte) string {
	h := sha256.Sum256(b)
	hex := fmt.Sprintf("%x", h)
	os.WriteFile(filepath.Join(dir, "blobs", "sha256", hex), b, 0o644)
	return "sha256:" + hex
}
