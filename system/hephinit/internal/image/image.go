// Package image reads what hephc's initramfs builder writes into an image
// about itself: the services to start, the programs it carries and what
// its console offers.
package image

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// Where the builder puts the files.
const (
	ServicesFile = "/etc/heph/services.json"
	ProgramsFile = "/etc/heph/programs.json"
	ConsoleFile  = "/etc/heph/console.json"
)

// Restart policies.
const (
	RestartOnFailure = "on-failure"
	RestartAlways    = "always"
	RestartNever     = "never"
)

// Service is a program the init starts and, as Restart says, starts again
// when it exits.
type Service struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
	Restart string   `json:"restart"`
}

// Program is a program of the image's packages, e.g. /bin/age.
type Program struct {
	Path    string `json:"path"`
	Package string `json:"package"`
	Version string `json:"version,omitempty"`
}

// Console is what the image offers on its console: Shell is the image's
// consoleShell, a root shell with no login.
type Console struct {
	Shell bool `json:"shell"`
}

// ReadConsole reads a console file: a JSON object {"shell": BOOL}.
func ReadConsole(file string) (Console, error) {
	var c Console
	err := readJSON(file, &c)
	return c, err
}

// ReadServices reads a services file: a JSON object of services by name.
func ReadServices(file string) (map[string]Service, error) {
	var s map[string]Service
	if err := readJSON(file, &s); err != nil {
		return nil, err
	}
	for name, svc := range s {
		switch svc.Restart {
		case RestartOnFailure, RestartAlways, RestartNever:
		case "":
			svc.Restart = RestartOnFailure
			s[name] = svc
		default:
			return nil, fmt.Errorf("%s: service %s: unknown restart policy %q", file, name, svc.Restart)
		}
		if svc.Command == "" {
			return nil, fmt.Errorf("%s: service %s has no command", file, name)
		}
	}
	return s, nil
}

// ReadPrograms reads a programs file: a JSON list of programs.
func ReadPrograms(file string) ([]Program, error) {
	var p []Program
	err := readJSON(file, &p)
	return p, err
}

// Names returns the services' names, sorted.
func Names(s map[string]Service) []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func readJSON(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
