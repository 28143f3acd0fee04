// Command static is built with CGO_ENABLED=0 by the sandbox tests: a
// statically linked executable, which needs no libraries in a sandbox.
package main

func main() {}
