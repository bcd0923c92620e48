package engine

import (
	"net/netip"
	"testing"
)

func TestChooseEndpointWeights(t *testing.T) {
	ep := func(s string, w uint32) Endpoint { return Endpoint{Address: netip.MustParseAddrPort(s), Weight: w} }
	w := &Worker{ID: 0}
	for _, tc := range []struct {
		name   string
		policy LBPolicy
		eps    []Endpoint
		want   []int // picks per endpoint over 60 choices
	}{
		{"rr_equal", RoundRobin, []Endpoint{ep("127.0.0.1:1", 0), ep("127.0.0.1:2", 0), ep("127.0.0.1:3", 0)}, []int{20, 20, 20}},
		{"rr_weighted", RoundRobin, []Endpoint{ep("127.0.0.1:1", 1), ep("127.0.0.1:2", 2), ep("127.0.0.1:3", 3)}, []int{10, 20, 30}},
		{"least_request_weighted", LeastRequest, []Endpoint{ep("127.0.0.1:1", 1), ep("127.0.0.1:2", 2)}, []int{20, 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCluster(ClusterConfig{Name: tc.name, LBPolicy: tc.policy, Endpoints: tc.eps}, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]int, len(tc.eps))
			hosts := c.Hosts()
			for i := 0; i < 60; i++ {
				h := c.ChooseHost(w, nil)
				for j := range hosts {
					if hosts[j] == h {
						got[j]++
					}
				}
				// Least request sees the choice as an open connection.
				h.Local(w).Active++
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("picks %v, want %v", got, tc.want)
				}
			}
		})
	}
}
