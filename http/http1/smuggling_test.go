package http1

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/http/header"
)

type vector struct {
	name, source, limits, in, want string
	line                           int
}

func loadVectors(t testing.TB, path string) []vector {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	var cur vector
	flush := func() {
		if cur.name != "" {
			if cur.in == "" || cur.want == "" {
				t.Fatalf("%s:%d: vector %q lacks in or want", path, cur.line, cur.name)
			}
			out = append(out, cur)
		}
		cur = vector{}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("%s:%d: no key", path, n)
		}
		val = strings.TrimSpace(val)
		switch key {
		case "name":
			cur.name, cur.line = val, n
		case "source":
			cur.source = val
		case "limits":
			cur.limits = val
		case "in":
			s, err := strconv.Unquote(val)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
			cur.in = s
		case "want":
			cur.want = val
		default:
			t.Fatalf("%s:%d: unknown key %q", path, n, key)
		}
	}
	flush()
	return out
}

// firstMessage captures the first message's framing.
type firstMessage struct {
	seen      bool
	msg       Message
	authority string
}

func (f *firstMessage) OnHeaders(h *header.Map, m *Message) {
	if !f.seen {
		f.seen, f.msg = true, *m
		a, _ := h.GetKnown(header.Authority)
		f.authority = string(a)
	}
}
func (f *firstMessage) OnBody([]byte) {}
func (f *firstMessage) OnComplete()   {}

// verdict parses in as a request and renders what happened in the want: syntax.
func verdict(lim Limits, in string) string {
	var p Parser
	p.InitRequest(lim)
	var m header.Map
	p.SetHeaderMap(&m)
	f := &firstMessage{}
	data := []byte(in)
	for len(data) > 0 && !f.seen {
		n, err := p.Parse(data, f)
		if err != nil {
			var e *Error
			errors.As(err, &e)
			return fmt.Sprintf("reject %d %s", e.Status, e.Detail)
		}
		data = data[n:]
	}
	if !f.seen {
		return "incomplete"
	}
	s := "accept "
	switch f.msg.Body {
	case BodyNone:
		s += "none"
	case BodyContentLength:
		s += fmt.Sprintf("cl=%d", f.msg.ContentLength)
	case BodyChunked:
		s += "chunked"
	case BodyUntilClose:
		s += "untilclose"
	}
	return s
}

func TestSmugglingVectors(t *testing.T) {
	vs := loadVectors(t, "testdata/smuggling.txt")
	if len(vs) < 80 {
		t.Fatalf("only %d vectors", len(vs))
	}
	for _, v := range vs {
		lim := DefaultLimits
		lim.AcceptHTTP10 = true
		switch v.limits {
		case "":
		case "underscore-reject":
			lim.HeadersWithUnderscores = UnderscoreRejectRequest
		default:
			t.Fatalf("%s: unknown limits %q", v.name, v.limits)
		}
		want, wantAuthority, _ := strings.Cut(v.want, " authority=")
		got := verdict(lim, v.in)
		if got != want {
			t.Errorf("line %d %q (%s):\n got %s\nwant %s", v.line, v.name, v.source, got, want)
			continue
		}
		if wantAuthority != "" {
			var p Parser
			p.InitRequest(lim)
			f := &firstMessage{}
			p.Parse([]byte(v.in), f)
			if f.authority != wantAuthority {
				t.Errorf("line %d %q: :authority %q, want %q", v.line, v.name, f.authority, wantAuthority)
			}
		}
		// The verdict must not depend on how the bytes arrive.
		if got1 := transcript(parseAll(t, false, lim, bytewise(v.in))); got1 != transcript(parseAll(t, false, lim, one(v.in))) {
			t.Errorf("line %d %q: byte-at-a-time parse differs", v.line, v.name)
		}
	}
}
