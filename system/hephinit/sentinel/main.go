// Command sentinel is a heph image's passive threat-reporting daemon. When
// it starts it records what the image holds: every file under the watched
// directories (its type, mode, size, inode and change time, and the
// SHA-256 of its contents when it is at most 1 MiB) and every TCP and UDP
// port that is listening. Then, every interval, it looks again and reports
// each difference on stdout (the console), one line each:
//
//	HEPH-SENTINEL: watching 212 files in /bin, /etc, and 3 listeners
//	HEPH-SENTINEL ALERT: modified /etc/hostname
//	HEPH-SENTINEL ALERT: added /bin/nc
//	HEPH-SENTINEL ALERT: removed /etc/heph/services.json
//	HEPH-SENTINEL ALERT: new listener tcp 0.0.0.0:23
//
// It is passive: it changes nothing and blocks nothing. Given a package
// server (-server, -server-cert, from the image's configuration) and a
// reporter token handed over at boot (report.go), it also posts each
// alert to the server, which shows them per machine and per day.
// A change of contents that keeps the size is seen through the change time
// (which no write can avoid updating, and no program can set back).
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("sentinel", flag.ContinueOnError)
	fset.SetOutput(stderr)
	dirs := fset.String("watch", "/bin,/bbin,/etc,/init", "comma-separated files and directories to watch")
	interval := fset.Duration("interval", 30*time.Second, "how often to look again")
	proc := fset.String("proc", "/proc", "where /proc is (for the listening ports)")
	rounds := fset.Int("rounds", 0, "stop after this many looks (0: never)")
	server := fset.String("server", "", "the package server to report alerts to (https://HOST:PORT); the kernel command line's heph.server= overrides it")
	serverCert := fset.String("server-cert", "", "the sha256:HEX fingerprint of the server's TLS certificate; heph.server_cert= overrides it")
	node := fset.String("node", "", "this machine's name in reports (default: /etc/hostname)")
	fwcfg := fset.String("fw-cfg", fwCfgToken, "where QEMU's fw_cfg gives the reporter token")
	cmdline := fset.String("cmdline", "/proc/cmdline", "the kernel command line (heph.reporter_token=, heph.server=, heph.server_cert=)")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	if *interval <= 0 {
		fmt.Fprintln(stderr, "sentinel: -interval must be positive")
		return 2
	}
	s := &sentinel{roots: strings.Split(*dirs, ","), proc: *proc}
	base := s.look()
	fmt.Fprintf(stdout, "HEPH-SENTINEL: watching %d files in %s, and %d listeners\n", len(base.files), strings.Join(s.roots, ", "), len(base.listeners))
	var rep *reporter
	if b, err := os.ReadFile(*cmdline); err == nil {
		p := bootParams(string(b))
		if v := p["heph.server"]; v != "" {
			*server = v
		}
		if v := p["heph.server_cert"]; v != "" {
			*serverCert = v
		}
	}
	if *server != "" {
		tok, from := bootToken(*fwcfg, *cmdline)
		if *node == "" {
			*node = hostname("/etc/hostname")
		}
		var err error
		switch {
		case tok == "":
			fmt.Fprintf(stdout, "HEPH-SENTINEL: no reporter token was given at boot: alerts stay on the console\n")
		default:
			if rep, err = newReporter(*server, *serverCert, *node, tok, stdout); err != nil {
				fmt.Fprintf(stdout, "HEPH-SENTINEL: cannot report: %v\n", err)
			} else {
				fmt.Fprintf(stdout, "HEPH-SENTINEL: reporting to %s as %s (token from %s)\n", *server, *node, from)
			}
		}
	}
	for i := 0; *rounds == 0 || i < *rounds; i++ {
		time.Sleep(*interval)
		now := s.look()
		alerts := compare(base, now)
		for _, alert := range alerts {
			fmt.Fprintf(stdout, "HEPH-SENTINEL ALERT: %s\n", alert)
		}
		if rep != nil && (len(alerts) > 0 || len(rep.pending) > 0) {
			rep.report(alerts)
		}
		base = now
	}
	return 0
}

type sentinel struct {
	roots []string
	proc  string
}

// state is what one look found.
type state struct {
	files     map[string]fileState
	listeners map[string]bool // "tcp 0.0.0.0:23"
}

type fileState struct {
	mode   fs.FileMode
	size   int64
	inode  uint64
	ctime  int64 // nanoseconds
	sum    [sha256.Size]byte
	target string // of a symbolic link
}

// maxHashed is the largest file whose contents are hashed at each look;
// larger ones are known by their metadata (change time, size, inode).
const maxHashed = 1 << 20

func (s *sentinel) look() state {
	st := state{files: make(map[string]fileState), listeners: listeners(s.proc)}
	for _, root := range s.roots {
		if root == "" {
			continue
		}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // gone or unreadable: it counts as absent
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			f := fileState{mode: fi.Mode(), size: fi.Size()}
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				f.inode = uint64(sys.Ino)
				f.ctime = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
			}
			switch {
			case fi.IsDir():
				// What changes in a directory is reported entry by entry.
				f.size, f.ctime = 0, 0
			case fi.Mode()&fs.ModeSymlink != 0:
				f.target, _ = os.Readlink(p)
			case fi.Mode().IsRegular() && fi.Size() <= maxHashed:
				f.sum = hashFile(p)
			}
			st.files[p] = f
			return nil
		})
	}
	return st
}

func hashFile(p string) (sum [sha256.Size]byte) {
	f, err := os.Open(p)
	if err != nil {
		return sum
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	copy(sum[:], h.Sum(nil))
	return sum
}

// compare returns what changed from a to b, sorted.
func compare(a, b state) []string {
	var out []string
	for p, was := range a.files {
		is, ok := b.files[p]
		switch {
		case !ok:
			out = append(out, "removed "+p)
		case is != was:
			out = append(out, "modified "+p)
		}
	}
	for p := range b.files {
		if _, ok := a.files[p]; !ok {
			out = append(out, "added "+p)
		}
	}
	for l := range b.listeners {
		if !a.listeners[l] {
			out = append(out, "new listener "+l)
		}
	}
	for l := range a.listeners {
		if !b.listeners[l] {
			out = append(out, "listener gone "+l)
		}
	}
	for i := range out {
		out[i] = clean(out[i])
	}
	sort.Strings(out)
	return out
}
