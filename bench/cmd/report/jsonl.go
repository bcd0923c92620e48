package main

import (
	"bufio"
	"bytes"
	"encoding/json"
)

// jsonLines decodes one JSON object per non-empty line.
func jsonLines(b []byte, out *[]run) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r run
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		*out = append(*out, r)
	}
	return sc.Err()
}
