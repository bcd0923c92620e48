package http1

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/http/header"
)

// recorder turns a parser's events into a transcript that does not depend on how the
// input was split: adjacent OnBody pieces are merged.
type recorder struct {
	events     []string
	lastStatus int
	tunnel     bool // the last request was CONNECT or an Upgrade: the rest is not HTTP
	completed  bool
	body       strings.Builder
	inBody     bool
}

func (r *recorder) flushBody() {
	if r.inBody {
		r.events = append(r.events, fmt.Sprintf("body %q", r.body.String()))
		r.body.Reset()
		r.inBody = false
	}
}

func (r *recorder) OnHeaders(h *header.Map, m *Message) {
	r.flushBody()
	r.lastStatus = m.Status
	r.tunnel = m.Status == 0 && (m.Connect || m.Upgrade)
	r.events = append(r.events, "headers "+dumpMap(h)+" "+dumpMsg(m))
}

func (r *recorder) OnBody(data []byte) {
	r.inBody = true
	r.body.Write(data)
}

func (r *recorder) OnComplete() {
	r.flushBody()
	r.completed = true
	r.events = append(r.events, "complete")
}

func dumpMap(h *header.Map) string {
	var b strings.Builder
	b.WriteByte('[')
	first := true
	h.Range(func(name, value []byte) bool {
		if !first {
			b.WriteByte(' ')
		}
		first = false
		fmt.Fprintf(&b, "%s=%q", name, value)
		return true
	})
	b.WriteByte(']')
	return b.String()
}

func dumpMsg(m *Message) string {
	return fmt.Sprintf("{v=%s status=%d head=%t connect=%t ka=%t body=%d cl=%d upgrade=%t expect=%t dropped=%d}",
		m.Version, m.Status, m.Head, m.Connect, m.KeepAlive, m.Body, m.ContentLength, m.Upgrade, m.Expect100, m.DroppedUnderscoreHeaders)
}

// parseAll feeds input in the given pieces to a fresh parser and returns the
// transcript, ending with the error (if any), the bytes left after a 101/CONNECT and
// Finish's verdict. For responses, expect supplies ExpectResponseTo before each
// message (the last entry repeats).
func parseAll(t testing.TB, response bool, lim Limits, pieces [][]byte, expect ...[2]bool) []string {
	var p Parser
	if response {
		p.InitResponse(lim)
	} else {
		p.InitRequest(lim)
	}
	var hm header.Map
	p.SetHeaderMap(&hm)
	r := &recorder{}
	msgs := 0
	setExpect := func() {
		if response && len(expect) > 0 {
			e := expect[min(msgs, len(expect)-1)]
			p.ExpectResponseTo(e[0], e[1])
		}
	}
	setExpect()
	var rest strings.Builder
	// stop: as the connection manager does, stop parsing after a CONNECT or Upgrade
	// request; what follows is the tunnel's.
	stop := false
	for _, piece := range pieces {
		for len(piece) > 0 {
			if p.Upgraded() || stop {
				rest.Write(piece)
				break
			}
			n, err := p.Parse(piece, r)
			if n < 0 || n > len(piece) {
				t.Fatalf("Parse consumed %d of %d", n, len(piece))
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("error %v is not *Error", err)
				}
				r.flushBody()
				r.events = append(r.events, fmt.Sprintf("error %d %s", e.Status, e.Detail))
				return r.events
			}
			if r.completed {
				// Parse returns right after OnComplete: at most one per call.
				r.completed = false
				stop = r.tunnel
				if r.lastStatus >= 200 || r.lastStatus == 101 {
					msgs++
					setExpect()
				}
			}
			if n == 0 && !p.Upgraded() {
				t.Fatalf("Parse consumed nothing of %q without error", piece)
			}
			piece = piece[n:]
		}
	}
	if err := p.Finish(r); err != nil {
		r.flushBody()
		var e *Error
		errors.As(err, &e)
		r.events = append(r.events, fmt.Sprintf("finish error %d %s", e.Status, e.Detail))
	} else {
		r.flushBody()
		r.events = append(r.events, "finish")
	}
	if rest.Len() > 0 {
		r.events = append(r.events, fmt.Sprintf("rest %q", rest.String()))
	}
	return r.events
}

func one(s string) [][]byte { return [][]byte{[]byte(s)} }

func bytewise(s string) [][]byte {
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte{s[i]}
	}
	return out
}

func splitAt(s string, i int) [][]byte { return [][]byte{[]byte(s[:i]), []byte(s[i:])} }

func transcript(ev []string) string { return strings.Join(ev, "\n") }
