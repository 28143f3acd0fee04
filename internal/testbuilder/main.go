// Command testbuilder is a small static program that tests and benchmarks
// use as a derivation's builder. Each argument is one step:
//
//	echo=TEXT        print TEXT to stdout (the build log)
//	file=NAME=TEXT   write $out/NAME holding TEXT ($out becomes a directory)
//	single=TEXT      make $out a single file holding TEXT
//	time=NAME        write $out/NAME holding "built at " and the time, to the nanosecond (not reproducible)
//	random=NAME      write $out/NAME holding "random " and 16 random bytes in hex (not reproducible)
//	ref=INPUT        write $out/ref-INPUT holding the value of env INPUT (an input's store path)
//	cat=PATH         copy the file PATH to stdout
//	sleep=MS         sleep MS milliseconds
//	fail=CODE        exit with CODE
//	env              print the environment, sorted
//	dial=HOST:PORT   connect to HOST:PORT over TCP and print "dial HOST:PORT: connected" or "dial HOST:PORT: unreachable: ERROR"
package main

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "testbuilder:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	out := os.Getenv("out")
	for _, a := range args {
		op, val, _ := strings.Cut(a, "=")
		switch op {
		case "echo":
			fmt.Println(val)
		case "file":
			name, text, _ := strings.Cut(val, "=")
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, name), []byte(text), 0o644); err != nil {
				return err
			}
		case "single":
			if err := os.WriteFile(out, []byte(val), 0o644); err != nil {
				return err
			}
		case "time", "random":
			text := "built at " + time.Now().Format(time.RFC3339Nano) + "\n"
			if op == "random" {
				b := make([]byte, 16)
				if _, err := rand.Read(b); err != nil {
					return err
				}
				text = fmt.Sprintf("random %x\n", b)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, val), []byte(text), 0o644); err != nil {
				return err
			}
		case "ref":
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, "ref-"+val), []byte(os.Getenv(val)), 0o644); err != nil {
				return err
			}
		case "cat":
			b, err := os.ReadFile(val)
			if err != nil {
				return err
			}
			os.Stdout.Write(b)
		case "sleep":
			ms, err := strconv.Atoi(val)
			if err != nil {
				return err
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case "fail":
			code, err := strconv.Atoi(val)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "failing with %d as asked\n", code)
			os.Exit(code)
		case "env":
			env := os.Environ()
			sort.Strings(env)
			for _, e := range env {
				fmt.Println(e)
			}
		case "dial":
			c, err := net.DialTimeout("tcp", val, 3*time.Second)
			if err != nil {
				fmt.Printf("dial %s: unreachable: %v\n", val, err)
				break
			}
			c.Close()
			fmt.Printf("dial %s: connected\n", val)
		default:
			return fmt.Errorf("unknown step %q", a)
		}
	}
	return nil
}
