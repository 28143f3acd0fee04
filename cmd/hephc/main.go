// Command hephc compiles whole systems described in CUE into a
// content-addressed derivation graph.
package main

import "os"

func main() { os.Exit(Main()) }
