package engine

import (
	"encoding/binary"
	"reflect"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestListenerStatsOwnCacheLines (defect 15): each worker writes its own ListenerStats in
// one slice; a size that is a multiple of 64 keeps two workers off one cache line.
func TestListenerStatsOwnCacheLines(t *testing.T) {
	for name, size := range map[string]uintptr{
		"ListenerStats": unsafe.Sizeof(ListenerStats{}),
		"ServerStats":   unsafe.Sizeof(ServerStats{}),
		"clusterWorker": unsafe.Sizeof(clusterWorker{}),
	} {
		if size%64 != 0 {
			t.Errorf("%s is %d bytes, not a multiple of a cache line", name, size)
		}
	}
}

// TestWriteBufferOffsetWide (defect 15): the sent offset of a write buffer is a full int
// (an int32 wrapped, and panicked, past 2 GiB buffered with watermarks off).
func TestWriteBufferOffsetWide(t *testing.T) {
	if k := reflect.TypeOf(writeBuffer{}.off).Kind(); k != reflect.Int {
		t.Fatalf("writeBuffer.off is %v", k)
	}
	b := &writeBuffer{b: make([]byte, 10), off: 6}
	b.compact()
	if b.off != 0 || len(b.b) != 4 {
		t.Fatalf("compact: off %d len %d", b.off, len(b.b))
	}
}

// TestPortNetworkOrder (defect 15): ports are read and written in network byte order
// byte by byte, whatever the machine's order.
func TestPortNetworkOrder(t *testing.T) {
	var rsa unix.RawSockaddrAny
	p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
	p.Family = unix.AF_INET
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&p.Port))[:], 8443)
	p.Addr = [4]byte{10, 0, 0, 1}
	if got := addrPortFromRaw(&rsa); got.String() != "10.0.0.1:8443" {
		t.Fatalf("decoded %v", got)
	}
	var port uint16
	putPort(&port, 8443)
	if b := (*[2]byte)(unsafe.Pointer(&port)); b[0] != 8443>>8 || b[1] != 8443&0xff {
		t.Fatalf("putPort wrote %v", *b)
	}
}

// TestAddCounters: counters are added field by field, in arrays and unexported fields
// too; gauges and histograms are left alone; mismatched types do nothing.
func TestAddCounters(t *testing.T) {
	type inner struct {
		c [2]Counter
		g Gauge
		h Histogram
	}
	type stats struct {
		A  Counter
		in inner
	}
	var dst, src stats
	dst.A.Add(1)
	src.A.Add(2)
	src.in.c[1].Add(5)
	src.in.g.Add(7)
	src.in.h.Record(3)
	AddCounters(&dst, &src)
	var hs HistogramSnapshot
	dst.in.h.Snapshot(&hs)
	if dst.A.Value() != 3 || dst.in.c[1].Value() != 5 || dst.in.g.Value() != 0 || hs.Count() != 0 {
		t.Fatalf("after AddCounters: A %d c1 %d g %d h %d", dst.A.Value(), dst.in.c[1].Value(), dst.in.g.Value(), hs.Count())
	}
	AddCounters(&dst, &ClusterStats{}) // another type: nothing
	AddCounters(dst.A.Value(), 7)      // not pointers: nothing
	if dst.A.Value() != 3 {
		t.Fatal("AddCounters added across types")
	}
}
