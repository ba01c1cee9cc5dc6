package gateway

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// providerText makes text a provider (or a browser claiming to come from
// one) sent fit to store and show: valid UTF-8, printable characters only
// (no terminal escapes, no CR/LF, no other controls: each becomes a
// space, runs of them one), trimmed, and at most n bytes. HTML is left to
// the layer that writes HTML (html/template escapes it); the JSON API
// escapes the rest.
func providerText(s string, n int) string {
	var b strings.Builder
	space := false
	// Only the first few n bytes can reach the result: the rest of a
	// hostile query string is not even looked at.
	for _, r := range strings.ToValidUTF8(cut(s, 4*n), "\uFFFD") {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		space = r == ' '
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// maxLastErrorLen bounds a link's last_error as the API shows it.
const maxLastErrorLen = 1000

// shownLastError is a link's last_error as the API shows it: stored text
// from before sanitizing at the callback (or from any other writer) is
// cleaned on the way out too.
func shownLastError(s string) string { return providerText(s, maxLastErrorLen) }
