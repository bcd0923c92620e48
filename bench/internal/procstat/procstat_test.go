package procstat

import (
	"os"
	"testing"
)

func TestParseStatOddComm(t *testing.T) {
	line := "1234 (we ird) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 57 13 0 0 20 0 7 0 12345 1000000 200 18446744073709551615\n"
	c, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if c.UserTicks != 57 || c.SysTicks != 13 || c.Threads != 7 || c.State != 'S' {
		t.Fatalf("got %+v", c)
	}
}

func TestSelf(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("self not alive")
	}
	if _, err := ReadCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS {
		t.Fatalf("implausible %+v", m)
	}
}

func TestMachineBusy(t *testing.T) {
	if b, _, err := MachineBusyTicks(); err != nil || b == 0 {
		t.Fatalf("busy=%d err=%v", b, err)
	}
}

func TestCtxSwitches(t *testing.T) {
	v, i, err := CtxSwitches(os.Getpid())
	if err != nil || v+i == 0 {
		t.Fatalf("vol=%d invol=%d err=%v", v, i, err)
	}
}

func TestRunTime(t *testing.T) {
	if v, err := parseSchedstat([]byte("98355923 9185419 358\n")); err != nil || v != 98355923 {
		t.Fatalf("parse: %d %v", v, err)
	}
	ns, err := RunTime(os.Getpid())
	if err != nil || ns == 0 {
		t.Fatalf("ns=%d err=%v", ns, err)
	}
}
