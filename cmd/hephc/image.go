package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/pflag"

	"hephc.dev/hephc/pipeline"
	"hephc.dev/hephc/pkgimage"
	"hephc.dev/hephc/realize"
	"hephc.dev/hephc/registry"
	"hephc.dev/hephc/store"
)

func init() {
	register(&command{
		name:    "image",
		args:    "(-A ATTR [FILE.cue…|DIR] | PATH) (--to oci://HOST/REPOSITORY:TAG | --oci-layout DIR | --docker-archive FILE) | --disk -A ATTR [FILE.cue…|DIR] -o FILE",
		summary: "make a package's OCI image (its closure's paths as layers) for a registry, a layout or a docker archive; or a system's bootable disk image (--disk)",
		flags: func(fs *pflag.FlagSet) {
			fs.StringP("attr", "A", "", "the package, e.g. base.packages.age: realized first")
			fs.String("to", "", "push the image to oci://HOST[:PORT]/REPOSITORY:TAG")
			fs.String("mount-from", "", "a binary cache on the same registry (oci://HOST/REPOSITORY) whose path layers the registry mounts instead of receiving them again")
			fs.String("oci-layout", "", "write the image as an OCI image layout in `DIR`")
			fs.String("docker-archive", "", "write the image as a docker archive (docker load, skopeo's docker-archive:) `FILE`")
			fs.String("tag", "", "the image's tag in a layout or archive (default: the package's version, else latest)")
			fs.Int("max-layers", pkgimage.MaxLayers, "the most layers: past it, the largest paths keep a layer each and the others share one")
			fs.Bool("disk", false, "write the raw GPT disk image (UEFI, systemd-boot, slots A and B) of the system -A names (images.NAME, or its disks.NAME) to -o")
			fs.StringP("output", "o", "", "with --disk: the disk image `FILE` to write")
		},
		run: runImage,
	})
}

func runImage(e *env, fs *pflag.FlagSet, args []string) error {
	if disk, _ := fs.GetBool("disk"); disk {
		return runDiskImage(e, fs, args) // deploy.go
	}
	attr, _ := fs.GetString("attr")
	to, _ := fs.GetString("to")
	layoutDir, _ := fs.GetString("oci-layout")
	archiveFile, _ := fs.GetString("docker-archive")
	tag, _ := fs.GetString("tag")
	maxLayers, _ := fs.GetInt("max-layers")
	mountFrom, _ := fs.GetString("mount-from")
	n := 0
	for _, s := range []string{to, layoutDir, archiveFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usagef("want one of --to, --oci-layout and --docker-archive")
	}
	if maxLayers < 2 {
		return usagef("--max-layers wants at least 2")
	}
	var ref registry.Ref
	if to != "" {
		var err error
		if ref, err = registry.ParseRef(to); err != nil {
			return usagef("%v", err)
		}
		if ref.Tag == "" {
			return usagef("--to wants a tag: oci://HOST/REPOSITORY:TAG")
		}
		tag = ref.Tag
	}
	var mount *registry.Ref
	if mountFrom != "" {
		if to == "" {
			return usagef("--mount-from goes with --to")
		}
		m, err := registry.ParseRef(mountFrom)
		if err != nil {
			return usagef("%v", err)
		}
		mount = &m
	}
	st, ctx, done, err := lockedStore(e)
	if err != nil {
		return err
	}
	defer done()
	root, version, err := imageRoot(ctx, e, st, attr, args)
	if err != nil {
		return err
	}
	if tag == "" {
		tag = version
	}
	if tag == "" {
		tag = "latest"
	}
	dir := layoutDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "hephc-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = filepath.Join(tmp, "oci")
	} else {
		dir = absPath(e.cwd, dir)
	}
	start := time.Now()
	im, err := pkgimage.Write(ctx, st, root, dir, pkgimage.Options{Version: version, MaxLayers: maxLayers, Tag: tag})
	if err != nil {
		return err
	}
	img, err := im.Img()
	if err != nil {
		return err
	}
	var size int64
	for _, l := range im.Layers {
		size += l.Size
	}
	where := dir
	switch {
	case to != "":
		c := &registry.Client{}
		sent, err := c.PushImage(ctx, img, ref, mount)
		if err != nil {
			return err
		}
		where = fmt.Sprintf("%s (%s sent)", ref, store.FormatSize(sent))
	case archiveFile != "":
		t, err := name.NewTag(root.Name + ":" + tag)
		if err != nil {
			return fmt.Errorf("tagging the image: %w", err)
		}
		out := absPath(e.cwd, archiveFile)
		if err := tarball.WriteToFile(out, t, img); err != nil {
			return fmt.Errorf("writing %s: %w", out, err)
		}
		where = out
	}
	fmt.Fprintln(e.stdout, im.Manifest.Digest)
	fmt.Fprintf(e.stderr, "image of %s: %d layers, %s, PATH=%s/bin: %s, in %s\n", root, len(im.Layers), store.FormatSize(size), root, where, time.Since(start).Round(time.Millisecond))
	return nil
}

// imageRoot is the store path the image is of: -A's, realized first (its
// version too), or the one store path given.
func imageRoot(ctx context.Context, e *env, st *store.Store, attr string, args []string) (store.Path, string, error) {
	if attr == "" {
		if len(args) != 1 {
			return store.Path{}, "", usagef("want -A ATTR, or one store path")
		}
		p, err := pathArg(e, st, args[0])
		if err != nil {
			return store.Path{}, "", err
		}
		if _, ok, err := st.QueryPathInfo(ctx, p); err != nil {
			return store.Path{}, "", err
		} else if !ok {
			return store.Path{}, "", fmt.Errorf("%s is not valid in the store %s", p, st.Dir)
		}
		return p, "", nil
	}
	g, _, err := evaluate(e, evaluation{attr: attr, args: args, policy: true, useCache: true})
	if err != nil {
		return store.Path{}, "", err
	}
	h, ok := mainOutput(g, attr)
	if !ok {
		return store.Path{}, "", fmt.Errorf("%s: not one package", attr)
	}
	sg := pipeline.StoreGraph(g)
	prog := newProgress(e)
	_, err = realize.Realize(ctx, st, sg, []store.DrvHash{h}, realize.Options{
		Jobs: runtime.NumCPU(), Getenv: e.getenv, Events: prog.event, SourceDir: configDir(e, args),
	})
	prog.finish()
	if err != nil {
		return store.Path{}, "", err
	}
	return sg.PathOf(h), g.Nodes[h].Drv.Version, nil
}
