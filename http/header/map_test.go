package header

import "testing"

func dump(m *Map) string {
	s := ""
	m.Range(func(n, v []byte) bool { s += string(n) + "=" + string(v) + ";"; return true })
	return s
}

func TestInsertKeepsOrderAndKnown(t *testing.T) {
	var m Map
	m.AddString(":method", "GET")
	m.AddString(":path", "/")
	m.AddString("content-length", "5")
	m.AddString("x-a", "1")
	m.Insert(2, []byte(":Authority"), []byte("h"))
	if got, want := dump(&m), ":method=GET;:path=/;:authority=h;content-length=5;x-a=1;"; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	for k, want := range map[Known]string{Method: "GET", Path: "/", Authority: "h", ContentLength: "5"} {
		if v, ok := m.GetKnown(k); !ok || string(v) != want {
			t.Errorf("%s = %q %v, want %q", k.Name(), v, ok, want)
		}
	}
	// A second field of a known name inserted before the first becomes the first.
	m.Insert(0, []byte("content-length"), []byte("7"))
	if v, _ := m.GetKnown(ContentLength); string(v) != "7" {
		t.Errorf("content-length = %q, want the earlier 7", v)
	}
	if v, _ := m.GetKnown(Method); string(v) != "GET" {
		t.Errorf(":method moved wrongly: %q", v)
	}
	// Insert at the end is Add.
	m.Insert(m.Fields(), []byte("x-b"), []byte("2"))
	if v, ok := m.Get("x-b"); !ok || string(v) != "2" || m.Len() != 7 {
		t.Errorf("x-b = %q %v, len %d", v, ok, m.Len())
	}
}

func TestAddLowerCases(t *testing.T) {
	var m Map
	m.Add([]byte("X-Mixed-CASE_1"), []byte("Value-Kept"))
	m.AddString("Content-Length", "3")
	if got, want := dump(&m), "x-mixed-case_1=Value-Kept;content-length=3;"; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if v, ok := m.GetKnown(ContentLength); !ok || string(v) != "3" {
		t.Fatalf("content-length not known: %q %v", v, ok)
	}
}

// TestKnownFastPaths: Del, Set and AppendValue on headers whose first position is kept
// behave as the scans they replace, duplicates included.
func TestKnownFastPaths(t *testing.T) {
	var m Map
	m.AddString("a", "1")
	m.AddString("X-Request-Id", "r1")
	m.AddString("b", "2")
	m.AddString("x-request-id", "r2")
	if n := m.Del("x-request-id"); n != 2 || m.Has("x-request-id") || m.Len() != 2 {
		t.Fatalf("Del: %d, has %v, len %d", n, m.Has("x-request-id"), m.Len())
	}
	if n := m.Del("x-request-id"); n != 0 {
		t.Fatalf("second Del: %d", n)
	}
	m.AddString("via", "1.1 a")
	m.AddString("c", "3")
	m.AddString("via", "1.1 b")
	m.SetString("via", "2.0 z")
	if v, _ := m.Get("via"); string(v) != "2.0 z" || m.Count("via") != 1 {
		t.Fatalf("Set: %q count %d", v, m.Count("via"))
	}
	m.AppendValue("x-forwarded-for", []byte("10.0.0.1"), ",")
	m.AppendValue("x-forwarded-for", []byte("10.0.0.2"), ",")
	if v, _ := m.Get("x-forwarded-for"); string(v) != "10.0.0.1,10.0.0.2" {
		t.Fatalf("AppendValue: %q", v)
	}
	m.SetString("server", "s")
	if v, ok := m.GetKnown(Server); !ok || string(v) != "s" {
		t.Fatalf("Set of an absent known header: %q %v", v, ok)
	}
	if a := testing.AllocsPerRun(100, func() {
		m.AppendValue("x-forwarded-for", []byte("1"), ",")
		m.Del("x-forwarded-for")
	}); a != 0 {
		t.Fatalf("%v allocations", a)
	}
}
