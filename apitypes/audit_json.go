package apitypes

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e as JSON to b, byte for byte what encoding/json's
// Marshal produces (same field order, omitempty, HTML-safe escaping), without
// reflection or allocation: every node writes each audit entry to its
// --audit-file from the Raft apply loop.
func (e *AuditEntry) AppendJSON(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","node":`...)
	b = appendJSONString(b, e.Node)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.RequestID)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, e.Action)
	b = append(b, `,"principal":{"accessor":`...)
	b = appendJSONString(b, e.Principal.Accessor)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, e.Principal.Name)
	b = append(b, `},"source_ip":`...)
	b = appendJSONString(b, e.SourceIP)
	if e.Path != "" {
		b = append(b, `,"path":`...)
		b = appendJSONString(b, e.Path)
	}
	if e.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, e.Version, 10)
	}
	if e.KMSKey != "" {
		b = append(b, `,"kms_key":`...)
		b = appendJSONString(b, e.KMSKey)
	}
	if e.KMSKeyVersion != 0 {
		b = append(b, `,"kms_key_version":`...)
		b = strconv.AppendUint(b, uint64(e.KMSKeyVersion), 10)
	}
	b = append(b, `,"result":`...)
	b = appendJSONString(b, e.Result)
	if e.ErrorCode != "" {
		b = append(b, `,"error_code":`...)
		b = appendJSONString(b, e.ErrorCode)
	}
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, e.Reason)
	}
	b = append(b, `,"prev_hash":`...)
	b = appendJSONString(b, e.PrevHash)
	b = append(b, `,"hash":`...)
	b = appendJSONString(b, e.Hash)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s the way encoding/json does by default: <, > and &
// as \u00XX, control characters escaped, invalid UTF-8 as U+FFFD, and U+2028
// and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
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
