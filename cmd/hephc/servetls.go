package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// tlsFiles is server.tls: a certificate and its key to serve with
// instead of the one serve init makes.
type tlsFiles struct {
	Certificate string `json:"certificate"`
	Key         string `json:"key"`
	// From is where the paths are: "config" (the configuration's
	// directory) or "data" (the server's data directory).
	From string `json:"from"`
}

// certificate is the TLS certificate serve serves with: server.tls's
// files when the configuration names them, else the one serve init made
// in the data directory dataDir. A key others may read, a key that is
// not the certificate's and a certificate not valid at now are refused.
func (s *serverSpec) certificate(dataDir string, now time.Time) (tls.Certificate, error) {
	if s.TLS == nil {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dataDir, certFile), filepath.Join(dataDir, keyFile))
		if err != nil {
			return cert, fmt.Errorf("serve: the TLS certificate (hephc serve init makes it, or name one in server.tls): %w", err)
		}
		return cert, nil
	}
	base := s.dir
	if s.TLS.From == "data" {
		base = dataDir
	}
	certPath, keyPath := filepath.Join(base, s.TLS.Certificate), filepath.Join(base, s.TLS.Key)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return tls.Certificate{}, s.errorf("tls.key: %v", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return tls.Certificate{}, s.errorf("tls.key: %s may be read by others (mode %04o): chmod 600 it", keyPath, perm)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return cert, s.errorf("tls: %s with the key %s: %v", certPath, keyPath, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return cert, s.errorf("tls.certificate: %s: %v", certPath, err)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return cert, s.errorf("tls.certificate: %s is valid from %s to %s, not now", certPath,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}
