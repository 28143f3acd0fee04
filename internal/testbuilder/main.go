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
//	dial=IP:PORT     connect to IP:PORT over TCP and print "dial IP:PORT: connected" or "dial IP:PORT: unreachable: ERROR"
//
// It is started once per build by the benchmarks of realize, so it
// imports little (no fmt, net or crypto): a Go program's start grows
// with the packages it initializes.
package main

import (
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		os.Stderr.WriteString("testbuilder: " + err.Error() + "\n")
		os.Exit(1)
	}
}

func line(s string) { os.Stdout.WriteString(s + "\n") }

func run(args []string) error {
	out := os.Getenv("out")
	for _, a := range args {
		op, val, _ := strings.Cut(a, "=")
		switch op {
		case "echo":
			line(val)
		case "file":
			name, text, _ := strings.Cut(val, "=")
			if err := writeOut(out, name, text); err != nil {
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
				f, err := os.Open("/dev/urandom")
				if err != nil {
					return err
				}
				_, err = io.ReadFull(f, b)
				f.Close()
				if err != nil {
					return err
				}
				text = "random " + hex.EncodeToString(b) + "\n"
			}
			if err := writeOut(out, val, text); err != nil {
				return err
			}
		case "ref":
			if err := writeOut(out, "ref-"+val, os.Getenv(val)); err != nil {
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
			os.Stderr.WriteString("failing with " + val + " as asked\n")
			os.Exit(code)
		case "env":
			env := os.Environ()
			slices.Sort(env)
			for _, e := range env {
				line(e)
			}
		case "dial":
			if err := dial(val, 3*time.Second); err != nil {
				line("dial " + val + ": unreachable: " + err.Error())
				break
			}
			line("dial " + val + ": connected")
		default:
			return errors.New("unknown step " + strconv.Quote(a))
		}
	}
	return nil
}

// writeOut writes $out/name holding text, making $out a directory.
func writeOut(out, name, text string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, name), []byte(text), 0o644)
}
