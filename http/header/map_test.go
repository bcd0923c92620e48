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
