package api

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer/apitypes"
)

// getSecretValue is the hottest answer: it is encoded here by hand, into a
// pooled buffer that is wiped before it goes back, with the same bytes
// encoding/json would write (TestValueJSONMatchesEncodingJSON). Through
// encoding/json it was 4 % of a follower's CPU under reads, and the
// base64 of the value stayed in encoding/json's own buffer pool. (net/http
// still copies the answer into its connection's write buffer, which it
// reuses but does not wipe.)

var valueBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeSecretValue writes v as the 200 answer and wipes the value and every
// copy of it this function made.
func writeSecretValue(w http.ResponseWriter, v *apitypes.GetSecretValueResponse) {
	bp := valueBufs.Get().(*[]byte)
	// Room for the whole answer first: growing the buffer midway would
	// leave the value in the abandoned array, unwiped.
	b := slices.Grow((*bp)[:0], secretValueJSONBound(v))
	b = appendSecretValueJSON(b, v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	clear(b)
	clear(v.Value)
	*bp = b[:0]
	valueBufs.Put(bp)
}

// secretValueJSONBound is at least len(appendSecretValueJSON(nil, v)): a
// string byte escapes to at most 6 bytes (\u00XX, or \ufffd for an invalid
// one; U+2028 is 3 bytes for 6), and the rest (names, numbers of at most 20
// digits, a time of at most 35 characters) is under 160 bytes.
func secretValueJSONBound(v *apitypes.GetSecretValueResponse) int {
	return 6*len(v.Path) + 6*len(v.UID) + base64.StdEncoding.EncodedLen(len(v.Value)) + 160
}

// appendSecretValueJSON appends what json.NewEncoder(w).Encode(v) writes.
func appendSecretValueJSON(b []byte, v *apitypes.GetSecretValueResponse) []byte {
	b = append(b, `{"path":`...)
	b = appendJSONString(b, v.Path)
	b = append(b, `,"uid":`...)
	b = appendJSONString(b, v.UID)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, v.Version, 10)
	b = append(b, `,"value":`...)
	if v.Value == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Value)
		b = append(b, '"')
	}
	b = append(b, `,"created_at":`...)
	b = appendJSONTime(b, v.CreatedAt)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, v.Index, 10)
	return append(b, "}\n"...)
}

// appendJSONTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds,
// trailing zeros dropped). Years outside 0-9999, which MarshalJSON refuses,
// can't come from the state (times are Unix nanoseconds in an int64).
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string encoding with HTML escaping
// (its default): ", \ and control characters escaped, <, > and & as
// \u003c, \u003e, \u0026, U+2028 and U+2029 escaped, invalid UTF-8 as
// U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
