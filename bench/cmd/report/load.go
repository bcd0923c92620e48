package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// run mirrors the loadgen's JSON output; only the fields the report uses.
type run struct {
	Mode    string            `json:"mode"`
	Labels  map[string]string `json:"labels"`
	Conns   int               `json:"conns"`
	ConnsOK int               `json:"conns_ok"`
	Size    int               `json:"size"`
	Msgs    uint64            `json:"messages"`
	MsgsPS  float64           `json:"msgs_per_s"`
	Lat     struct {
		P50, P99, P999, Max float64
	} `json:"latency_us"`
	Server *struct {
		CPUSeconds float64 `json:"cpu_s"`
		Util       float64 `json:"util"`
		Threads    int     `json:"threads"`
		CPUPerMsg  float64 `json:"cpu_us_per_msg"`
		CtxPerMsg  float64 `json:"ctxsw_per_msg"`
	} `json:"server"`
	Mem *struct {
		RSSBefore    int64   `json:"rss_before"`
		RSSWith      int64   `json:"rss_with"`
		BytesPerConn float64 `json:"bytes_per_conn"`
	} `json:"mem"`
	LGUtil    float64 `json:"loadgen_cpu_util"`
	OtherUtil float64 `json:"other_cpu_util"`
	Errors    struct {
		Dial     int64  `json:"dial"`
		IO       int64  `json:"io"`
		Mismatch int64  `json:"mismatch"`
		Stuck    bool   `json:"stuck"`
		Last     string `json:"last"`
	} `json:"errors"`
	ServerExited bool   `json:"server_exited"`
	Failure      string `json:"failure"`
	// Negotiated (tlsload rows): handshakes by "version cipher group [resumed]".
	Negotiated map[string]int64 `json:"negotiated"`

	// Proxy scenarios (wrk rows written by the harness, connload rows):
	// named figures and, for balance, per-worker vectors.
	Metrics   map[string]float64 `json:"metrics"`
	PerWorker *struct {
		Conns []float64 `json:"conns"`
		CPU   []float64 `json:"cpu_s"`
		Other float64   `json:"other_threads_cpu_s"`
	} `json:"per_worker"`
}

func (r *run) server() string { return r.Labels["server"] }

func (r *run) errCount() int64 {
	n := r.Errors.Dial + r.Errors.IO + r.Errors.Mismatch
	if r.Errors.Stuck || r.ServerExited || r.Failure != "" {
		n++
	}
	return n
}

type resultFile struct {
	Path     string          `json:"-"`
	Scenario string          `json:"scenario"`
	Quick    bool            `json:"quick"`
	Date     string          `json:"date"`
	Machine  json.RawMessage `json:"machine"`
	Params   json.RawMessage `json:"params"`
	Runs     []run           `json:"runs"`
}

func readResult(path string) (*resultFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f resultFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.Path = path
	return &f, nil
}

// latest returns the newest result file of a scenario in dir; file names
// carry a UTC timestamp, so the lexical maximum is the newest.
func latest(dir, scenario string) (*resultFile, error) {
	matches, err := filepath.Glob(filepath.Join(dir, scenario+"-2*.json"))
	if err != nil || len(matches) == 0 {
		return nil, err
	}
	sort.Strings(matches)
	return readResult(matches[len(matches)-1])
}

// machineLine renders the machine record as one readable line.
func machineLine(raw json.RawMessage) string {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return ""
	}
	get := func(k string) string { return strings.TrimSpace(fmt.Sprint(m[k])) }
	portico := get("portico_commit")
	if b, _ := m["portico_base"].(string); b != "" {
		portico += "; portico-base " + b
	}
	return fmt.Sprintf("%s, %s cores (%s), %s RAM, kernel %s, %s; gnet %s, netpoll %s; Portico %s; SUT on CPU %s, load generator on CPU %s",
		get("cpu_model"), get("cores"), get("virt"), get("mem"), get("kernel"), get("go"),
		get("gnet"), get("netpoll"), portico, get("sut_cpu"), get("loadgen_cpu"))
}
