package problem

import "unicode/utf8"

// MaxQuote is the most of a client's input that an error or a log line
// quotes: enough to recognise it, little enough that a megabyte header
// cannot make the answer or the log a megabyte too.
const MaxQuote = 256

// Clip returns s, or its first MaxQuote bytes (cut at a character
// boundary) followed by an ellipsis.
func Clip(s string) string {
	if len(s) <= MaxQuote {
		return s
	}
	n := MaxQuote
	for n > MaxQuote-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
