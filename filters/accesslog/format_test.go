package accesslog

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portico-proxy/portico/http/header"
)

func render(t *testing.T, format string, e *Entry) string {
	t.Helper()
	f, err := Compile(format)
	if err != nil {
		t.Fatalf("Compile(%q): %v", format, err)
	}
	return string(f.Append(nil, e))
}

func tcpEntry() *Entry {
	e := benchEntry()
	return &e
}

// httpEntry is a proxied request with 10 request headers (pseudo-headers included).
func httpEntry() *Entry {
	req, resp := &header.Map{}, &header.Map{}
	for _, h := range [][2]string{
		{":method", "GET"}, {":path", "/api/v1/items?id=7"}, {":authority", "example.com"},
		{":scheme", "http"}, {"user-agent", "curl/8.5.0"}, {"x-forwarded-for", "10.1.2.3"},
		{"x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"}, {"accept", "*/*"},
		{"x-custom", "Some Value"}, {"x-empty", ""},
	} {
		req.AddString(h[0], h[1])
	}
	resp.AddString(":status", "200")
	resp.AddString("x-envoy-upstream-service-time", "12")
	resp.AddString("content-type", "text/plain")
	e := benchEntry()
	e.Protocol = "HTTP/1.1"
	e.ResponseCode = 200
	e.ResponseCodeDetails = "via_upstream"
	e.RequestHeaders, e.ResponseHeaders = req, resp
	e.RouteName = "default"
	e.UpstreamLocalAddress = netip.MustParseAddrPort("10.9.0.1:40000")
	e.RequestDuration = 1500 * time.Microsecond
	e.ResponseDuration = 12 * time.Millisecond
	e.ResponseTxDuration = 0
	e.UpstreamRequestAttemptCount = 1
	e.DownstreamLocalAddress = netip.MustParseAddrPort("[2001:db8::1]:443")
	return &e
}

// The default format on a TCP connection prints what it did before HTTP existed.
func TestDefaultFormatTCP(t *testing.T) {
	want := `[2026-01-02T03:04:05.006Z] "- - -" 0 - 123456 654321 1234 - "-" "-" "-" "-" "10.9.8.7:8080"` + "\n"
	if got := render(t, "", tcpEntry()); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestDefaultFormatHTTP(t *testing.T) {
	want := `[2026-01-02T03:04:05.006Z] "GET /api/v1/items?id=7 HTTP/1.1" 200 - 123456 654321 1234 12 ` +
		`"10.1.2.3" "curl/8.5.0" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "example.com" "10.9.8.7:8080"` + "\n"
	if got := render(t, "", httpEntry()); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// X-ENVOY-ORIGINAL-PATH wins over :path when present.
	e := httpEntry()
	e.RequestHeaders.(*header.Map).AddString("x-envoy-original-path", "/orig")
	if got := render(t, "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", e); got != "/orig" {
		t.Errorf("original path: %q", got)
	}
}

func TestOperators(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		format    string
		http, tcp string
	}{
		{"%REQ(:METHOD)%", "GET", "-"},
		{"%REQ(:path)%", "/api/v1/items?id=7", "-"},
		{"%REQ(X-Custom)%", "Some Value", "-"},
		{"%REQ(x-custom):4%", "Some", "-"},
		{"%REQ(X-CUSTOM):0%", "", "-"},
		{"%REQ(X-CUSTOM):100%", "Some Value", "-"},
		{"%REQ(x-missing)%", "-", "-"},
		{"%REQ(x-missing):3%", "-", "-"}, // "-" is not truncated
		{"%REQ(x-missing?User-Agent)%", "curl/8.5.0", "-"},
		{"%REQ(x-missing?x-also-missing)%", "-", "-"},
		{"%REQ(x-empty)%", "", "-"}, // present but empty: Envoy prints it empty
		{"%REQ(:AUTHORITY)%", "example.com", "-"},
		{"%RESP(CONTENT-TYPE)%", "text/plain", "-"},
		{"%RESP(x-missing?:status)%", "200", "-"},
		{"%TRAILER(grpc-status)%", "-", "-"},
		{"%RESPONSE_CODE%", "200", "0"},
		{"%RESPONSE_CODE_DETAILS%", "via_upstream", "-"},
		{"%RESPONSE_FLAGS%", "-", "-"},
		{"%PROTOCOL%", "HTTP/1.1", "-"},
		{"%ROUTE_NAME%", "default", "-"},
		{"%UPSTREAM_LOCAL_ADDRESS%", "10.9.0.1:40000", "-"},
		{"%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "10.9.0.1", "-"},
		{"%UPSTREAM_LOCAL_PORT%", "40000", "-"},
		{"%UPSTREAM_TRANSPORT_FAILURE_REASON%", "-", "-"},
		{"%REQUEST_DURATION%", "1", "-"},
		{"%RESPONSE_DURATION%", "12", "-"},
		{"%RESPONSE_TX_DURATION%", "0", "-"},
		{"%UPSTREAM_REQUEST_ATTEMPT_COUNT%", "1", "0"},
		{"%HOSTNAME%", host, host},
		{"%DYNAMIC_METADATA(envoy.lb:version)%", "-", "-"},
		{"%FILTER_STATE(some.key)%", "-", "-"},
		{"%FILTER_STATE(some.key):10%", "-", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS%", "10.1.2.3:45678", "10.1.2.3:45678"},
		{"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.1.2.3", "10.1.2.3"},
		{"%DOWNSTREAM_REMOTE_PORT%", "45678", "45678"},
		{"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", "-", "-"},
		{"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%", "-", "-"}, // was "invalid IP"
		{"%DOWNSTREAM_LOCAL_ADDRESS%", "[2001:db8::1]:443", "-"},
		{"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", "2001:db8::1", "-"},
		{"%UPSTREAM_HOST%", "10.9.8.7:8080", "10.9.8.7:8080"},
		{"%UPSTREAM_REMOTE_ADDRESS%", "10.9.8.7:8080", "10.9.8.7:8080"},
		{"%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.9.8.7", "10.9.8.7"},
		{"%UPSTREAM_CLUSTER%", "backend", "backend"},
		{"%REQUESTED_SERVER_NAME%", "-", "-"},
		{"%BYTES_RECEIVED% %BYTES_SENT% %DURATION%", "123456 654321 1234", "123456 654321 1234"},
		{"100%% %PROTOCOL()%", "100% HTTP/1.1", "100% -"}, // Envoy takes an empty () as none
		{"%START_TIME%", "2026-01-02T03:04:05.006Z", "2026-01-02T03:04:05.006Z"},
	} {
		if got := render(t, tc.format, httpEntry()); got != tc.http {
			t.Errorf("HTTP %s: %q, want %q", tc.format, got, tc.http)
		}
		if got := render(t, tc.format, tcpEntry()); got != tc.tcp {
			t.Errorf("TCP %s: %q, want %q", tc.format, got, tc.tcp)
		}
	}
	t.Setenv("PORTICO_TEST_ENV", "hello")
	if got := render(t, "%ENVIRONMENT(PORTICO_TEST_ENV):4% %ENVIRONMENT(PORTICO_TEST_UNSET)%", tcpEntry()); got != "hell -" {
		t.Errorf("ENVIRONMENT: %q", got)
	}
	// A negative duration was not reached.
	e := httpEntry()
	e.ResponseDuration, e.ResponseTxDuration = -1, -1
	if got := render(t, "%RESPONSE_DURATION% %RESPONSE_TX_DURATION%", e); got != "- -" {
		t.Errorf("not reached: %q", got)
	}
}

func TestStartTimeFormats(t *testing.T) {
	e := tcpEntry()
	e.StartTime = time.Date(2026, 3, 7, 14, 5, 9, 123456789, time.FixedZone("X", 3600)) // printed in UTC
	for _, tc := range []struct{ format, want string }{
		{"%Y/%m/%dT%H:%M:%S%z %s", "2026/03/07T13:05:09+0000 1772888709"},
		{"%s.%3f", "1772888709.123"},
		{"%s.%6f", "1772888709.123456"},
		{"%s.%9f", "1772888709.123456789"},
		{"%f|%1f", "123456789|1"},
		{"%Y-%m-%dT%H:%M:%E3SZ", "2026-03-07T13:05:09.123Z"},
		{"%E6S %E0S %E*S %E*f %E2f", "09.123456 09 09.123456789 123456789 12"},
		{"%Ez %E*z %Z %ET %E4Y", "+00:00 +00:00:00 UTC T 2026"},
		{"%F %T %R %D", "2026-03-07 13:05:09 13:05 03/07/26"},
		{"%a %A %b %h %B %e %j %I%p %u %w %y", "Sat Saturday Mar Mar March  7 066 01PM 6 6 26"},
		{"%Es", "1772888709"},
		{"100%%", "100%"},
	} {
		if got := render(t, "%START_TIME("+tc.format+")%", e); got != tc.want {
			t.Errorf("START_TIME(%s): %q, want %q", tc.format, got, tc.want)
		}
	}
	e.StartTime = time.Date(2026, 3, 7, 14, 5, 9, 0, time.UTC)
	if got := render(t, "%START_TIME(%E*S %E*f)%", e); got != "09 0" {
		t.Errorf("whole second: %q", got)
	}
	for _, bad := range []string{"%n", "%Q", "%", "%0f", "%Ex", "%E"} {
		if _, err := Compile("%START_TIME(" + bad + ")%"); err == nil {
			t.Errorf("START_TIME(%s) compiled", bad)
		}
	}
}

// Envoy's syntax rules: an error names what is wrong.
func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct{ format, want string }{
		{"%BOGUS%", "%BOGUS% is not supported"},
		{"%PROTOCOL", "no valid command"},
		{"%protocol%", "no valid command"},
		{"50% off", "no valid command"},
		{"%REQ(:path%", "no valid command"},
		{"%REQ(x):%", "no valid command"},
		{"%REQ%", "REQ requires parameters"},
		{"%REQ()%", "REQ requires parameters"},
		{"%REQ(a?b?c)%", "more than 1 alternative header"},
		{"%REQ(x):99999999999%", "length must be an integer"},
		{"%DURATION:5%", "DURATION does not take any parameters or length"},
		{"%PROTOCOL(x)%", "PROTOCOL does not take any parameters or length"},
		{"%START_TIME:3%", "START_TIME does not allow length"},
		{"%DYNAMIC_METADATA(a:b):3%", "DYNAMIC_METADATA does not allow length"},
		{"%DYNAMIC_METADATA%", "DYNAMIC_METADATA requires parameters"},
	} {
		_, err := Compile(tc.format)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%q): %v, want an error with %q", tc.format, err, tc.want)
		}
	}
}

// Header values (request_headers_to_add): the same operators, absent values print nothing,
// and a constant value is known to be one.
func TestHeaderValues(t *testing.T) {
	for _, tc := range []struct {
		value, want string
		literal     bool
	}{
		{"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "10.1.2.3", false},
		{"%REQ(x-custom)%", "Some Value", false},
		{"%REQ(x-missing)%", "", false},
		{"%UPSTREAM_REMOTE_ADDRESS%", "10.9.8.7:8080", false},
		{"%PROTOCOL%", "HTTP/1.1", false},
		{"%START_TIME%", "2026-01-02T03:04:05.006Z", false},
		{"via %PROTOCOL% from %DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", "via HTTP/1.1 from ", false},
		{"static", "static", true},
		{"100%% sure", "100% sure", true},
		{"", "", true},
	} {
		f, err := CompileHeaderValue(tc.value)
		if err != nil {
			t.Fatalf("%q: %v", tc.value, err)
		}
		if got := string(f.Append(nil, httpEntry())); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.value, got, tc.want)
		}
		if f.IsLiteral() != tc.literal {
			t.Errorf("%q: IsLiteral %v", tc.value, f.IsLiteral())
		}
		if tc.literal && f.Literal() != tc.want {
			t.Errorf("%q: Literal %q", tc.value, f.Literal())
		}
		if !tc.literal && f.Literal() != "" {
			t.Errorf("%q: Literal %q of a format with operators", tc.value, f.Literal())
		}
	}
	if f, _ := CompileHeaderValue("x"); string(f.Append(nil, nil)) != "x" {
		t.Error("a literal renders without an entry")
	}
}

// Rendering a whole default-format HTTP line, with 10 request headers, does not allocate.
func TestAppendDoesNotAllocate(t *testing.T) {
	f, err := Compile("")
	if err != nil {
		t.Fatal(err)
	}
	all, err := Compile("%START_TIME(%s.%3f %E3S %a)% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% " +
		"%REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION% %ROUTE_NAME% %RESPONSE_CODE_DETAILS% " +
		"%UPSTREAM_REQUEST_ATTEMPT_COUNT% %HOSTNAME% %REQ(x-custom):4% %RESP(content-type)% %FILTER_STATE(x)%\n")
	if err != nil {
		t.Fatal(err)
	}
	e := httpEntry()
	buf := make([]byte, 0, 4096)
	for _, f := range []*Format{f, all} {
		if n := testing.AllocsPerRun(100, func() { buf = f.Append(buf[:0], e) }); n != 0 {
			t.Errorf("%.1f allocations per line %q", n, buf)
		}
	}
}

func BenchmarkAppendDefaultHTTP(b *testing.B) {
	f, _ := Compile("")
	e := httpEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = f.Append(buf[:0], e)
	}
}

// FuzzCompile: no format makes Compile or Append panic; a literal format renders as its
// Literal; a format without '%' renders as itself.
func FuzzCompile(f *testing.F) {
	f.Add(DefaultFormat)
	f.Add("%START_TIME(%Y-%m-%dT%H:%M:%E3S%z %s.%6f)%")
	f.Add("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):10%")
	f.Add("100%% %PROTOCOL()% %%")
	tcp, http := tcpEntry(), httpEntry()
	f.Fuzz(func(t *testing.T, format string) {
		for _, compile := range []func(string) (*Format, error){Compile, CompileHeaderValue} {
			fm, err := compile(format)
			if err != nil {
				continue
			}
			a := fm.Append(nil, tcp)
			fm.Append(nil, http)
			if fm.IsLiteral() && string(a) != fm.Literal() {
				t.Fatalf("%q: literal renders %q, Literal %q", format, a, fm.Literal())
			}
			if format != "" && !strings.Contains(format, "%") && string(a) != format {
				t.Fatalf("%q renders %q", format, a)
			}
		}
	})
}
