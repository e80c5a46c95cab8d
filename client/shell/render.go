package shell

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sanitize returns s with every rune that could move the cursor, change
// colours or otherwise act on a terminal shown escaped instead: characters
// of category Cc (control, including ESC as \x1b and newline as \n) and Cf
// (format, such as bidi overrides), invalid UTF-8 bytes, and the backslash
// itself (as \\) so that an escape cannot be forged.
func Sanitize(s string) string {
	clean := true
	for _, r := range s {
		if needsEscape(r) || r == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case r == '\\':
			b.WriteString(`\\`)
		case needsEscape(r):
			q := strconv.QuoteRuneToASCII(r) // e.g. '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r == utf8.RuneError || unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) ||
		r == '\u2028' || r == '\u2029'
}

// quote is the plain-mode form of a received string: a Go-quoted string
// (strconv.Quote), so a line always stays one line.
func quote(s string) string { return strconv.Quote(s) }

// plainTime is the plain-mode time format: RFC 3339 in UTC with milliseconds.
func plainTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// humanTime formats a message time for people: the clock time today,
// otherwise the date too.
func humanTime(ms int64, now time.Time) string {
	t := time.UnixMilli(ms).In(now.Location())
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

// palette holds the escape codes used for colour, or empty strings.
type palette struct {
	reset, dim, bold, red, green, yellow, blue, magenta, cyan string
}

func newPalette(color bool) palette {
	if !color {
		return palette{}
	}
	return palette{
		reset: "\x1b[0m", dim: "\x1b[2m", bold: "\x1b[1m", red: "\x1b[31m", green: "\x1b[32m",
		yellow: "\x1b[33m", blue: "\x1b[34m", magenta: "\x1b[35m", cyan: "\x1b[36m",
	}
}
