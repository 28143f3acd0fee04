package imagetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"hephc.dev/hephc/srcpos"
)

// guest is a console on pipes: it prints boot lines (in the order
// given), then answers each line typed with reply's lines, echoing the
// line first as a terminal does.
func guest(t *testing.T, boot []string, reply func(string) []string) (io.Reader, io.Writer) {
	outR, outW := io.Pipe()
	inR, inW := io.Pipe()
	t.Cleanup(func() { outW.Close(); inR.Close() })
	go func() {
		for _, l := range boot {
			fmt.Fprintf(outW, "\x1b[1m%s\x1b[0m\r\n", l)
		}
		r := bufio.NewReader(inR)
		for {
			line, err := r.ReadString('\r')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\r")
			fmt.Fprintf(outW, "$ %s\r\n", line)
			for _, l := range reply(line) {
				fmt.Fprintf(outW, "%s\r\n", l)
			}
		}
	}()
	return outR, inW
}

func send(s string) *string { return &s }

func TestConsoleSteps(t *testing.T) {
	out, in := guest(t, []string{"HEPH-SENTINEL: watching 12 files", "HEPH-SELFTEST OK", "heph: console shell on /dev/ttyS0"}, func(l string) []string {
		switch l {
		case "age-keygen":
			return []string{"# public key: age1xyz", "AGE-SECRET-KEY-1ABC"}
		case "touch /bin/planted":
			return []string{"HEPH-SENTINEL ALERT: added /bin/planted"}
		}
		return []string{"unknown command"}
	})
	var transcript strings.Builder
	con := NewConsole(out, in, &transcript)
	steps := []Step{
		// Lines of services started together, in either order.
		{Wait: "^HEPH-SELFTEST OK$", Timeout: time.Second},
		{Wait: "^HEPH-SENTINEL: watching", Timeout: time.Second},
		{Wait: "console shell on", Timeout: time.Second},
		{Send: send("age-keygen"), Expect: "^AGE-SECRET-KEY-1", Timeout: time.Second},
		{Send: send("touch /bin/planted")},
		{Wait: "ALERT: added /bin/planted", Timeout: time.Second},
	}
	passed, err := con.Run(context.Background(), steps)
	if err != nil {
		t.Fatalf("%v\n%s", err, transcript.String())
	}
	if len(passed) != len(steps) || passed[3] != `4: send "age-keygen", expect "^AGE-SECRET-KEY-1"` {
		t.Errorf("passed: %q", passed)
	}
	// A wait after a send does not see the lines before it.
	_, err = con.Run(context.Background(), []Step{{Send: send("true")}, {Wait: "HEPH-SELFTEST OK", Timeout: 100 * time.Millisecond}})
	if !errors.Is(err, ErrTimedOut) {
		t.Errorf("a wait after a send matched a line from before it: %v", err)
	}
}

// A line that never comes fails its step after the step's timeout, with
// the step's position; an expect does not match the line typed (echoed).
func TestConsoleStepFails(t *testing.T) {
	out, in := guest(t, []string{"booting"}, func(string) []string { return nil })
	con := NewConsole(out, in, nil)
	pos := srcpos.Pos{File: "/c/system.cue", Line: 12, Col: 5}
	start := time.Now()
	passed, err := con.Run(context.Background(), []Step{
		{Wait: "booting", Timeout: time.Second},
		{Send: send("echo NEVER"), Expect: "^NEVER$", Timeout: 200 * time.Millisecond, Pos: pos},
	})
	var se *StepError
	if !errors.As(err, &se) || se.Index != 1 || !errors.Is(err, ErrTimedOut) {
		t.Fatalf("err = %v, want step 2 timed out", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the step's 200ms timeout took %v", took)
	}
	if want := `step 2, send "echo NEVER", expect "^NEVER$": timed out after 200ms: no such line`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if se.Step.Pos != pos {
		t.Errorf("the failed step's position is %v, want %v", se.Step.Pos, pos)
	}
	if len(passed) != 1 {
		t.Errorf("passed = %q", passed)
	}
	if tail := con.Tail(1); len(tail) != 1 || tail[0] != "$ echo NEVER" {
		t.Errorf("tail = %q", tail)
	}
}

// A guest that stops fails the step waiting, at once.
func TestConsoleGuestStops(t *testing.T) {
	con := NewConsole(strings.NewReader("Kernel panic\n"), io.Discard, nil)
	_, err := con.Run(context.Background(), []Step{{Wait: "HEPH-SELFTEST OK", Timeout: time.Minute}})
	if err == nil || !strings.Contains(err.Error(), "the guest stopped") {
		t.Errorf("err = %v", err)
	}
}
