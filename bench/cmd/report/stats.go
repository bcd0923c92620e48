package main

import (
	"fmt"
	"slices"
)

// spread is the median and range of one figure over repetitions.
type spread struct {
	Med, Min, Max float64
	N             int
}

func summarize(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Med: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// fmtRange prints "med (min–max)" with a format for each number.
func (s spread) fmtRange(f string) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fmt.Sprintf(f, s.Med)
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", s.Med, s.Min, s.Max)
}

func ratio(a, b spread) string {
	if a.N == 0 || b.N == 0 || b.Med == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a.Med/b.Med)
}
