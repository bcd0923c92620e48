// Package jsonline writes a load tool's JSON result line, to a file or to standard output.
package jsonline

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Write marshals v as one JSON line into path, or to standard output when path is "".
func Write(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("jsonline: %w", err)
	}
	b = append(b, '\n')
	if path == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Labels is a repeatable -label key=value flag (flag.Value) whose pairs go into a result
// line as its "labels" object.
type Labels map[string]string

func (l Labels) String() string { return fmt.Sprint(map[string]string(l)) }

// Set implements flag.Value.
func (l Labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want key=value")
	}
	l[k] = v
	return nil
}
