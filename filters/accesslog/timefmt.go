package accesslog

import (
	"fmt"
	"strconv"
	"time"
)

// startTime is %START_TIME% or %START_TIME(format)%, in UTC as Envoy prints it.
func startTime(format string) (op, error) {
	if format == "" {
		format = "%Y-%m-%dT%H:%M:%E3SZ" // Envoy's default (2006-01-02T15:04:05.000Z)
	}
	l, err := compileTime(format)
	if err != nil {
		return nil, fmt.Errorf("START_TIME(%s): %w", format, err)
	}
	return func(b []byte, e *Entry) ([]byte, bool) { return l.append(b, e.StartTime.UTC()), true }, nil
}

// timeVerb is one piece of a compiled time format: a literal (verb 0) or a specifier.
// Besides strftime's letters the verbs are 'P' (seconds with n fraction digits, %E#S /
// %E*S), 'f' (n fraction digits, %f %Nf %E#f %E*f), 'G' (%E4Y), 'Q' (%Ez), 'q' (%E*z).
// n is -1 for "as many as needed" (the * forms).
type timeVerb struct {
	verb byte
	n    int
	lit  string
}

type timeLayout []timeVerb

// compileTime parses the strftime subset that Envoy's START_TIME is used with: Envoy's own
// %s (seconds since the epoch), %f and %1f..%9f (the first digits of the nanoseconds,
// truncated), and absl::FormatTime's specifiers and E forms. The time is UTC, so %z is
// +0000 and %Z UTC. A specifier outside the subset is an error rather than output that
// differs from Envoy's; %n is refused as Envoy refuses newlines in a time format.
func compileTime(format string) (timeLayout, error) {
	var l timeLayout
	var lit []byte
	verb := func(v byte, n int) {
		if len(lit) > 0 {
			l = append(l, timeVerb{lit: string(lit)})
			lit = lit[:0]
		}
		l = append(l, timeVerb{verb: v, n: n})
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			lit = append(lit, c)
			continue
		}
		if i+1 >= len(format) {
			return nil, fmt.Errorf("a lone %% at the end")
		}
		i++
		switch c = format[i]; c {
		case 'Y', 'y', 'm', 'd', 'e', 'H', 'I', 'M', 'S', 'p', 'j', 'a', 'A', 'b', 'B', 'u', 'w', 'z', 'Z', 's':
			verb(c, 0)
		case 'h':
			verb('b', 0)
		case 'f':
			verb('f', 9)
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			if i+1 >= len(format) || format[i+1] != 'f' {
				return nil, fmt.Errorf("unsupported time specifier %%%c", c)
			}
			verb('f', int(c-'0'))
			i++
		case 'F': // %Y-%m-%d
			verb('Y', 0)
			lit = append(lit, '-')
			verb('m', 0)
			lit = append(lit, '-')
			verb('d', 0)
		case 'T': // %H:%M:%S
			verb('H', 0)
			lit = append(lit, ':')
			verb('M', 0)
			lit = append(lit, ':')
			verb('S', 0)
		case 'R': // %H:%M
			verb('H', 0)
			lit = append(lit, ':')
			verb('M', 0)
		case 'D': // %m/%d/%y
			verb('m', 0)
			lit = append(lit, '/')
			verb('d', 0)
			lit = append(lit, '/')
			verb('y', 0)
		case '%':
			lit = append(lit, '%')
		case 't':
			lit = append(lit, '\t')
		case 'n':
			return nil, fmt.Errorf("a time format may not contain a newline (%%n)")
		case 'E':
			n, err := timeE(format[i+1:], verb, &lit)
			if err != nil {
				return nil, err
			}
			i += n
		default:
			return nil, fmt.Errorf("unsupported time specifier %%%c", c)
		}
	}
	if len(lit) > 0 {
		l = append(l, timeVerb{lit: string(lit)})
	}
	return l, nil
}

// timeE parses what follows %E (absl's extensions) and returns how many bytes it took.
func timeE(s string, verb func(byte, int), lit *[]byte) (int, error) {
	switch {
	case len(s) >= 1 && s[0] == 'z':
		verb('Q', 0)
		return 1, nil
	case len(s) >= 1 && s[0] == 'T':
		*lit = append(*lit, 'T')
		return 1, nil
	case len(s) >= 1 && s[0] == 's':
		// Not an absl form: absl hands it to strftime, which ignores the E of %Es.
		verb('s', 0)
		return 1, nil
	case len(s) >= 2 && s[0] == '*' && s[1] == 'z':
		verb('q', 0)
		return 2, nil
	case len(s) >= 2 && s[0] == '*' && s[1] == 'S':
		verb('P', -1)
		return 2, nil
	case len(s) >= 2 && s[0] == '*' && s[1] == 'f':
		verb('f', -1)
		return 2, nil
	case len(s) >= 2 && s[0] == '4' && s[1] == 'Y':
		verb('G', 0)
		return 2, nil
	case len(s) >= 2 && s[0] >= '0' && s[0] <= '9' && (s[1] == 'S' || s[1] == 'f'):
		n := int(s[0] - '0')
		if s[1] == 'S' {
			verb('P', n)
		} else {
			verb('f', n)
		}
		return 2, nil
	}
	return 0, fmt.Errorf("unsupported time specifier %%E%.2s", s)
}

func appendPad(b []byte, v, width int) []byte {
	if width == 2 && v >= 0 && v < 100 { // most verbs: no loop, no copy
		return append(b, byte('0'+v/10), byte('0'+v%10))
	}
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var d [20]byte
	i := len(d)
	for v > 0 || i == len(d) {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
	}
	for k := len(d) - i; k < width; k++ {
		b = append(b, '0')
	}
	return append(b, d[i:]...)
}

// appendFrac appends the first n digits of the nanoseconds (truncated, as Envoy and absl
// do); n < 0: all digits but trailing zeros, at least one.
func appendFrac(b []byte, ns, n int) []byte {
	var d [9]byte
	for i := 8; i >= 0; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	if n < 0 {
		k := 9
		for k > 1 && d[k-1] == '0' {
			k--
		}
		return append(b, d[:k]...)
	}
	return append(b, d[:n]...)
}

func (l timeLayout) append(b []byte, t time.Time) []byte {
	// The date and the clock once, rather than per verb (each is a division of the time).
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	for _, v := range l {
		switch v.verb {
		case 0:
			b = append(b, v.lit...)
		case 'Y':
			b = strconv.AppendInt(b, int64(year), 10)
		case 'G':
			b = appendPad(b, year, 4)
		case 'y':
			b = appendPad(b, year%100, 2)
		case 'm':
			b = appendPad(b, int(month), 2)
		case 'd':
			b = appendPad(b, day, 2)
		case 'e':
			if day < 10 {
				b = append(b, ' ')
			}
			b = strconv.AppendInt(b, int64(day), 10)
		case 'H':
			b = appendPad(b, hour, 2)
		case 'I':
			h := hour % 12
			if h == 0 {
				h = 12
			}
			b = appendPad(b, h, 2)
		case 'p':
			if hour < 12 {
				b = append(b, "AM"...)
			} else {
				b = append(b, "PM"...)
			}
		case 'M':
			b = appendPad(b, minute, 2)
		case 'S':
			b = appendPad(b, sec, 2)
		case 'P':
			b = appendPad(b, sec, 2)
			if ns := t.Nanosecond(); v.n > 0 || v.n < 0 && ns != 0 {
				b = appendFrac(append(b, '.'), ns, v.n)
			}
		case 'f':
			b = appendFrac(b, t.Nanosecond(), v.n)
		case 'j':
			b = appendPad(b, t.YearDay(), 3)
		case 'a':
			b = append(b, t.Weekday().String()[:3]...)
		case 'A':
			b = append(b, t.Weekday().String()...)
		case 'b':
			b = append(b, month.String()[:3]...)
		case 'B':
			b = append(b, month.String()...)
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b = strconv.AppendInt(b, int64(wd), 10)
		case 'w':
			b = strconv.AppendInt(b, int64(t.Weekday()), 10)
		case 'z':
			b = append(b, "+0000"...)
		case 'Q':
			b = append(b, "+00:00"...)
		case 'q':
			b = append(b, "+00:00:00"...)
		case 'Z':
			b = append(b, "UTC"...)
		case 's':
			b = strconv.AppendInt(b, t.Unix(), 10)
		}
	}
	return b
}
