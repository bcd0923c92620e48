package engine

import (
	"golang.org/x/sys/unix"

	"os"
	"strconv"
	"strings"
)

// somaxconn reads the kernel's listen backlog cap, which Envoy also uses as its default.
func somaxconn() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func closeFd(fd int) { unix.Close(fd) }
