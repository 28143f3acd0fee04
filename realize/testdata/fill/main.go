// Command fill is a builder for the full-disk tests: it writes $out, a
// file of N zero bytes (its one argument), 64 KiB at a time, and fails
// naming the error if it cannot.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fill:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: fill BYTES")
	}
	n, err := strconv.ParseInt(os.Args[1], 10, 64)
	if err != nil {
		return err
	}
	f, err := os.Create(os.Getenv("out"))
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	return f.Close()
}
