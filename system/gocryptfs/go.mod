// gocryptfs, the base group's encrypted containers, built in a module of
// its own: gocryptfs v2.6.1's go.mod requires golang.org/x/crypto v0.33.0,
// below the example policy's minimum (v0.35.0), so this module requires it
// with the x/crypto, x/sys and x/term that age is built with. It holds no
// code; system.cue builds the package github.com/rfjakob/gocryptfs/v2.
module hephc.dev/hephc/system/gocryptfs

go 1.26

require (
	github.com/aperturerobotics/jacobsa-crypto v1.1.0 // indirect
	github.com/hanwen/go-fuse/v2 v2.8.0 // indirect
	github.com/rfjakob/eme v1.1.2 // indirect
	github.com/rfjakob/gocryptfs/v2 v2.6.1 // indirect
	github.com/sabhiram/go-gitignore v0.0.0-20210923224102-525f6e181f06 // indirect
	github.com/spf13/pflag v1.0.5 // indirect
	golang.org/x/crypto v0.55.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	golang.org/x/term v0.45.0 // indirect
)
