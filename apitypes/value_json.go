package apitypes

import (
	"encoding/base64"
	"strconv"
	"time"
)

// AppendJSON appends v as JSON to b, byte for byte what encoding/json's
// Marshal produces, without reflection or allocation: getSecretValue is the
// hottest answer, and the caller can wipe the buffer it gives (the value is
// in it).
func (v *GetSecretValueResponse) AppendJSON(b []byte) []byte {
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
	// time.Time's MarshalJSON; years outside 0-9999, which it refuses,
	// can't come from the state (times are Unix nanoseconds in an int64).
	b = append(b, `,"created_at":"`...)
	b = v.CreatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","index":`...)
	b = strconv.AppendUint(b, v.Index, 10)
	return append(b, '}')
}

// JSONSizeBound is at least len(v.AppendJSON(nil)) + 1: a string byte
// escapes to at most 6 bytes (\u00XX, or \ufffd for an invalid one; U+2028
// is 3 bytes for 6), and the rest (names, numbers of at most 20 digits, a
// time of at most 35 characters) is under 160 bytes.
func (v *GetSecretValueResponse) JSONSizeBound() int {
	return 6*len(v.Path) + 6*len(v.UID) + base64.StdEncoding.EncodedLen(len(v.Value)) + 160
}
