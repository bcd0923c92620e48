// Package jsonline writes a load tool's JSON result line, to a file or to standard output.
package jsonline

import (
	"encoding/json"
	"fmt"
	"os"
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
