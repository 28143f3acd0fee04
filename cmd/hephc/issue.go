package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"hephc.dev/hephc/channel"
	"hephc.dev/hephc/server"
)

func init() {
	register(&command{
		name:    "issue",
		args:    "open --server URL ATTR [VERSION] TITLE | comment --server URL ID TEXT | close --server URL ID [TEXT] | list --server URL [ATTR]",
		summary: "package issues on the package server: an open issue blocks that version's promotion",
		flags: func(fs *pflag.FlagSet) {
			clientFlags(fs)
			fs.Bool("open", false, "list: only open issues")
		},
		run: runIssue,
	})
}

func runIssue(e *env, fs *pflag.FlagSet, args []string) error {
	if len(args) == 0 {
		return usagef("want open, comment, close or list")
	}
	c, err := serverClient(e, fs, "", "")
	if err != nil {
		return err
	}
	ctx := context.Background()
	sub, args := args[0], args[1:]
	switch sub {
	case "open":
		var attr, version, title string
		switch len(args) {
		case 2:
			attr, title = args[0], args[1]
			if version, err = currentVersion(ctx, c, attr); err != nil {
				return err
			}
		case 3:
			attr, version, title = args[0], args[1], args[2]
		default:
			return usagef("want open ATTR [VERSION] TITLE")
		}
		id, err := c.OpenIssue(ctx, attr, version, title)
		if err != nil {
			return serverError(c, err)
		}
		fmt.Fprintln(e.stdout, id)
		fmt.Fprintf(e.stderr, "opened issue #%d against %s %s: it blocks that version's promotion while open\n", id, attr, version)
	case "comment", "close":
		if len(args) < 1 || len(args) > 2 || (sub == "comment" && len(args) != 2) {
			return usagef("want %s ID TEXT", sub)
		}
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || id < 1 {
			return usagef("issue id %q: want a number", args[0])
		}
		text := ""
		if len(args) == 2 {
			text = args[1]
		}
		if sub == "comment" {
			err = c.CommentIssue(ctx, id, text)
		} else {
			err = c.CloseIssue(ctx, id, text)
		}
		if err != nil {
			return serverError(c, err)
		}
		fmt.Fprintf(e.stderr, "issue #%d: %s\n", id, map[string]string{"comment": "commented", "close": "closed"}[sub])
	case "list":
		if len(args) > 1 {
			return usagef("want list [ATTR]")
		}
		attr := ""
		if len(args) == 1 {
			attr = args[0]
		}
		open, _ := fs.GetBool("open")
		is, err := c.Issues(ctx, attr, open)
		if err != nil {
			return serverError(c, err)
		}
		for _, is := range is {
			printIssue(e, is)
		}
	default:
		return usagef("unknown issue command %q: want open, comment, close or list", sub)
	}
	return nil
}

func printIssue(e *env, is *server.Issue) {
	state := "open"
	if is.ClosedAt != nil {
		state = "closed by " + is.ClosedBy + " " + is.ClosedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(e.stdout, "#%d %s %s: %s (opened by %s %s; %s)\n", is.ID, is.Attr, is.Version, is.Title, is.OpenedBy, is.OpenedAt.UTC().Format(time.RFC3339), state)
	for _, cm := range is.Comments {
		fmt.Fprintf(e.stdout, "  %s %s: %s\n", cm.Who, cm.At.UTC().Format(time.RFC3339), cm.Text)
	}
}

// currentVersion is the version of attr an issue without one is about:
// the one in testing, else the one in stable.
func currentVersion(ctx context.Context, c *server.Client, attr string) (string, error) {
	chs, err := c.Channels(ctx)
	if err != nil {
		return "", serverError(c, err)
	}
	for _, want := range []string{channel.Testing, channel.Stable} {
		for _, ch := range chs {
			if ch.Name != want {
				continue
			}
			for i := len(ch.Entries) - 1; i >= 0; i-- {
				if ch.Entries[i].Attr == attr {
					return ch.Entries[i].Version, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s: %s is in neither testing nor stable: name its version", c.Base, attr)
}
