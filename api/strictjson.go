package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
)

// checkStrict walks a request body against the Go type it will be decoded
// into and refuses everything encoding/json lets through silently (SPEC §6
// "JSON"): a duplicate key at any depth (encoding/json keeps the last, a
// proxy or audit reader may keep the first), a key that matches a field only
// case-insensitively, a value of the wrong JSON type (an array of numbers for
// a []byte field, null for a string), base64 that is not standard, padded
// and canonical without whitespace (encoding/json skips CR/LF), and invalid
// UTF-8 or lone surrogate escapes in any string (encoding/json turns them
// into U+FFFD, so two different bodies would mean the same thing). It
// allocates nothing on well-formed bodies of the API's shapes; encoding/json
// then decodes what passed. Messages never quote a value.
func checkStrict(raw []byte, t reflect.Type) error {
	c := checker{raw: raw}
	c.ws()
	if c.pos < len(raw) && raw[c.pos] == 'n' && c.lit("null") {
		c.ws()
		if c.pos != len(raw) {
			return c.trailing()
		}
		return nil // a top-level null decodes to the zero request, like an empty body
	}
	ti := typeInfoOf(t)
	for ti.kind == tkPtr {
		ti = ti.elem
	}
	if ti.kind == tkStruct && (c.pos >= len(raw) || raw[c.pos] != '{') {
		if c.pos < len(raw) && !startsValue(raw[c.pos]) {
			return c.syntax()
		}
		return badJSON("malformed request: the body must be a JSON object")
	}
	if err := c.value(ti); err != nil {
		return err
	}
	c.ws()
	if c.pos != len(raw) {
		return c.trailing()
	}
	return nil
}

// maxJSONDepth bounds nesting: no request type is deeper than a few levels.
const maxJSONDepth = 32

type tkind uint8

const (
	tkAny    tkind = iota // any well-formed JSON (json.Unmarshaler, interface{})
	tkPtr                 // null or elem
	tkStruct              // object with known fields
	tkMap                 // object with string keys
	tkSlice               // array of elem
	tkBytes               // base64 string
	tkString              // string (also time.Time and TextUnmarshaler types)
	tkBool
	tkInt
	tkUint
	tkFloat
)

type typeInfo struct {
	kind   tkind
	bits   int // of numbers
	elem   *typeInfo
	fields []fieldInfo
}

type fieldInfo struct {
	name string
	ti   *typeInfo
}

func (ti *typeInfo) nullable() bool {
	switch ti.kind {
	case tkAny, tkPtr, tkMap, tkSlice, tkBytes:
		return true
	}
	return false
}

func (ti *typeInfo) want() string {
	switch ti.kind {
	case tkPtr:
		return ti.elem.want()
	case tkStruct, tkMap:
		return "an object"
	case tkSlice:
		return "an array"
	case tkBytes:
		return "a base64 string"
	case tkString:
		return "a string"
	case tkBool:
		return "a boolean"
	case tkInt, tkUint:
		return "an integer"
	case tkFloat:
		return "a number"
	}
	return "a JSON value"
}

var (
	typeInfos       sync.Map // reflect.Type → *typeInfo
	typeInfoMu      sync.Mutex
	timeType        = reflect.TypeFor[time.Time]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func typeInfoOf(t reflect.Type) *typeInfo {
	if ti, ok := typeInfos.Load(t); ok {
		return ti.(*typeInfo)
	}
	typeInfoMu.Lock()
	defer typeInfoMu.Unlock()
	building := map[reflect.Type]*typeInfo{}
	ti := buildTypeInfo(t, building)
	for bt, bi := range building {
		typeInfos.LoadOrStore(bt, bi)
	}
	return ti
}

func buildTypeInfo(t reflect.Type, building map[reflect.Type]*typeInfo) *typeInfo {
	if ti, ok := typeInfos.Load(t); ok {
		return ti.(*typeInfo)
	}
	if ti, ok := building[t]; ok {
		return ti // a recursive type: filled in by the caller up the stack
	}
	ti := &typeInfo{}
	building[t] = ti
	switch {
	case t == timeType:
		ti.kind = tkString
		return ti
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType):
		ti.kind = tkAny // its own UnmarshalJSON judges the value
		return ti
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textType):
		ti.kind = tkString
		return ti
	}
	switch t.Kind() {
	case reflect.Pointer:
		ti.kind, ti.elem = tkPtr, buildTypeInfo(t.Elem(), building)
	case reflect.Struct:
		ti.kind = tkStruct
		ti.fields = structFields(t, building)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			ti.kind = tkAny
			break
		}
		ti.kind, ti.elem = tkMap, buildTypeInfo(t.Elem(), building)
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			ti.kind = tkBytes
			break
		}
		ti.kind, ti.elem = tkSlice, buildTypeInfo(t.Elem(), building)
	case reflect.String:
		ti.kind = tkString
	case reflect.Bool:
		ti.kind = tkBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		ti.kind, ti.bits = tkInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		ti.kind, ti.bits = tkUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		ti.kind, ti.bits = tkFloat, t.Bits()
	default:
		ti.kind = tkAny
	}
	return ti
}

// structFields lists a struct's JSON fields, embedded structs flattened.
func structFields(t reflect.Type, building map[reflect.Type]*typeInfo) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, structFields(ft, building)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, fieldInfo{name: name, ti: buildTypeInfo(f.Type, building)})
	}
	return out
}

// checker walks one body.
type checker struct {
	raw   []byte
	pos   int
	depth int
	path  [8]string // field names down to the current value, for messages
	np    int       // names in path (deeper ones are not named)
	buf   []byte    // unescaped key or base64 string
}

func (c *checker) ws() {
	for c.pos < len(c.raw) {
		switch c.raw[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *checker) lit(s string) bool {
	if len(c.raw)-c.pos >= len(s) && string(c.raw[c.pos:c.pos+len(s)]) == s {
		c.pos += len(s)
		return true
	}
	return false
}

func startsValue(b byte) bool {
	return b == '{' || b == '[' || b == '"' || b == '-' || b >= '0' && b <= '9' || b == 't' || b == 'f' || b == 'n'
}

func (c *checker) syntax() error {
	if c.pos >= len(c.raw) {
		return badJSON("malformed request: truncated JSON")
	}
	return badJSON("malformed request: invalid JSON at offset %d", c.pos)
}

func (c *checker) trailing() error {
	return badJSON("malformed request: unexpected data after the JSON object")
}

// field names the current value for a message: "rules.conditions.source_cidrs".
func (c *checker) field() string {
	if c.np == 0 {
		return "the body"
	}
	return "field " + strconv.Quote(strings.Join(c.path[:min(c.np, len(c.path))], "."))
}

func (c *checker) wrongType(ti *typeInfo) error {
	return badJSON("malformed request: %s must be %s", c.field(), ti.want())
}

// value checks one JSON value against ti.
func (c *checker) value(ti *typeInfo) error {
	c.ws()
	if c.pos >= len(c.raw) {
		return c.syntax()
	}
	ch := c.raw[c.pos]
	if !startsValue(ch) {
		return c.syntax()
	}
	if ch == 'n' {
		if !c.lit("null") {
			return c.syntax()
		}
		if !ti.nullable() {
			return c.wrongType(ti)
		}
		return nil
	}
	switch ti.kind {
	case tkPtr:
		return c.value(ti.elem)
	case tkAny:
		return c.anyValue()
	case tkStruct:
		if ch != '{' {
			return c.wrongType(ti)
		}
		return c.object(ti)
	case tkMap:
		if ch != '{' {
			return c.wrongType(ti)
		}
		return c.mapObject(ti)
	case tkSlice:
		if ch != '[' {
			return c.wrongType(ti)
		}
		return c.array(ti.elem)
	case tkBytes:
		if ch != '"' {
			return c.wrongType(ti)
		}
		s, escaped, err := c.str()
		if err != nil {
			return err
		}
		if escaped {
			c.buf = unescape(c.buf[:0], s)
			s = c.buf
		}
		if !validStdBase64(s) {
			return badJSON("malformed request: %s is not valid base64 (standard alphabet, with padding, no whitespace)", c.field())
		}
		return nil
	case tkString:
		if ch != '"' {
			return c.wrongType(ti)
		}
		_, _, err := c.str()
		return err
	case tkBool:
		if c.lit("true") || c.lit("false") {
			return nil
		}
		if ch == 't' || ch == 'f' {
			return c.syntax()
		}
		return c.wrongType(ti)
	default: // numbers
		if ch != '-' && (ch < '0' || ch > '9') {
			return c.wrongType(ti)
		}
		return c.number(ti)
	}
}

func (c *checker) number(ti *typeInfo) error {
	start := c.pos
	integer, err := c.numberLit()
	if err != nil {
		return err
	}
	lit := c.raw[start:c.pos]
	switch ti.kind {
	case tkInt:
		if !integer {
			return c.wrongType(ti)
		}
		if _, err := strconv.ParseInt(string(lit), 10, ti.bits); err != nil {
			return badJSON("malformed request: %s is out of range", c.field())
		}
	case tkUint:
		if !integer || lit[0] == '-' {
			return badJSON("malformed request: %s must be a non-negative integer", c.field())
		}
		if _, err := strconv.ParseUint(string(lit), 10, ti.bits); err != nil {
			return badJSON("malformed request: %s is out of range", c.field())
		}
	case tkFloat:
		if _, err := strconv.ParseFloat(string(lit), ti.bits); err != nil {
			return badJSON("malformed request: %s is out of range", c.field())
		}
	}
	return nil
}

// numberLit scans a JSON number and reports whether it is an integer
// literal (no fraction, no exponent).
func (c *checker) numberLit() (integer bool, err error) {
	r := c.raw
	i := c.pos
	if i < len(r) && r[i] == '-' {
		i++
	}
	switch {
	case i < len(r) && r[i] == '0':
		i++
	case i < len(r) && r[i] >= '1' && r[i] <= '9':
		for i < len(r) && r[i] >= '0' && r[i] <= '9' {
			i++
		}
	default:
		c.pos = i
		return false, c.syntax()
	}
	integer = true
	if i < len(r) && r[i] == '.' {
		integer = false
		i++
		if i >= len(r) || r[i] < '0' || r[i] > '9' {
			c.pos = i
			return false, c.syntax()
		}
		for i < len(r) && r[i] >= '0' && r[i] <= '9' {
			i++
		}
	}
	if i < len(r) && (r[i] == 'e' || r[i] == 'E') {
		integer = false
		i++
		if i < len(r) && (r[i] == '+' || r[i] == '-') {
			i++
		}
		if i >= len(r) || r[i] < '0' || r[i] > '9' {
			c.pos = i
			return false, c.syntax()
		}
		for i < len(r) && r[i] >= '0' && r[i] <= '9' {
			i++
		}
	}
	c.pos = i
	return integer, nil
}

func (c *checker) enter() error {
	c.depth++
	if c.depth > maxJSONDepth {
		return badJSON("malformed request: JSON nested deeper than %d levels", maxJSONDepth)
	}
	return nil
}

// object checks a struct's object: known keys only, each at most once.
func (c *checker) object(ti *typeInfo) error {
	if err := c.enter(); err != nil {
		return err
	}
	c.pos++ // {
	var seen uint64
	var seenMore []bool // structs of more than 64 fields
	if len(ti.fields) > 64 {
		seenMore = make([]bool, len(ti.fields))
	}
	c.ws()
	if c.pos < len(c.raw) && c.raw[c.pos] == '}' {
		c.pos++
		c.depth--
		return nil
	}
	for {
		c.ws()
		if c.pos >= len(c.raw) || c.raw[c.pos] != '"' {
			return c.syntax()
		}
		key, escaped, err := c.str()
		if err != nil {
			return err
		}
		if escaped {
			c.buf = unescape(c.buf[:0], key)
			key = c.buf
		}
		idx := -1
		for i := range ti.fields {
			if ti.fields[i].name == string(key) {
				idx = i
				break
			}
		}
		if idx < 0 {
			return c.unknownField(ti, key)
		}
		if seenMore != nil {
			if seenMore[idx] {
				return c.duplicate(ti.fields[idx].name)
			}
			seenMore[idx] = true
		} else {
			if seen&(1<<idx) != 0 {
				return c.duplicate(ti.fields[idx].name)
			}
			seen |= 1 << idx
		}
		c.ws()
		if c.pos >= len(c.raw) || c.raw[c.pos] != ':' {
			return c.syntax()
		}
		c.pos++
		c.push(ti.fields[idx].name)
		if err := c.value(ti.fields[idx].ti); err != nil {
			return err
		}
		c.np--
		if done, err := c.next('}'); done || err != nil {
			return err
		}
	}
}

func (c *checker) push(name string) {
	if c.np < len(c.path) {
		c.path[c.np] = name
	}
	c.np++
}

// next consumes the separator after a member or element: true at the end.
func (c *checker) next(end byte) (bool, error) {
	c.ws()
	if c.pos >= len(c.raw) {
		return false, c.syntax()
	}
	switch c.raw[c.pos] {
	case ',':
		c.pos++
		return false, nil
	case end:
		c.pos++
		c.depth--
		return true, nil
	}
	return false, c.syntax()
}

func (c *checker) duplicate(name string) error {
	c.push(name)
	return badJSON("malformed request: %s appears more than once", c.field())
}

// unknownField names the key only if it looks like a field name (a key may
// be anything a client sent, even a value pasted in the wrong place).
func (c *checker) unknownField(ti *typeInfo, key []byte) error {
	where := ""
	if c.np > 0 {
		where = " in " + c.field()
	}
	if !looksLikeName(key) {
		return badJSON("malformed request: unknown field%s", where)
	}
	for _, f := range ti.fields {
		if strings.EqualFold(f.name, string(key)) {
			return badJSON("malformed request: unknown field %q%s (did you mean %q?)", key, where, f.name)
		}
	}
	return badJSON("malformed request: unknown field %q%s", key, where)
}

func looksLikeName(b []byte) bool {
	if len(b) == 0 || len(b) > 40 {
		return false
	}
	for _, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-') {
			return false
		}
	}
	return true
}

// mapObject checks an object of string keys, each at most once.
func (c *checker) mapObject(ti *typeInfo) error {
	return c.members(ti.elem)
}

// members walks an object's members, refusing a repeated key; each value is
// checked against elem (nil: any value).
func (c *checker) members(elem *typeInfo) error {
	if err := c.enter(); err != nil {
		return err
	}
	c.pos++ // {
	c.ws()
	if c.pos < len(c.raw) && c.raw[c.pos] == '}' {
		c.pos++
		c.depth--
		return nil
	}
	var few [16][]byte // keys seen, while few
	n := 0
	var many map[string]struct{}
	for {
		c.ws()
		if c.pos >= len(c.raw) || c.raw[c.pos] != '"' {
			return c.syntax()
		}
		key, escaped, err := c.str()
		if err != nil {
			return err
		}
		if escaped {
			key = unescape(nil, key) // kept: c.buf is reused below
		}
		dup := false
		if many != nil {
			_, dup = many[string(key)]
			many[string(key)] = struct{}{}
		} else {
			for _, k := range few[:n] {
				if bytes.Equal(k, key) {
					dup = true
					break
				}
			}
			if n < len(few) {
				few[n] = key
				n++
			} else {
				many = make(map[string]struct{}, 2*len(few))
				for _, k := range few {
					many[string(k)] = struct{}{}
				}
				many[string(key)] = struct{}{}
			}
		}
		if dup {
			return badJSON("malformed request: a key appears more than once in %s", c.field())
		}
		c.ws()
		if c.pos >= len(c.raw) || c.raw[c.pos] != ':' {
			return c.syntax()
		}
		c.pos++
		var err2 error
		if elem == nil {
			err2 = c.anyValue()
		} else {
			err2 = c.value(elem)
		}
		if err2 != nil {
			return err2
		}
		if done, err := c.next('}'); done || err != nil {
			return err
		}
	}
}

func (c *checker) array(elem *typeInfo) error {
	if err := c.enter(); err != nil {
		return err
	}
	c.pos++ // [
	c.ws()
	if c.pos < len(c.raw) && c.raw[c.pos] == ']' {
		c.pos++
		c.depth--
		return nil
	}
	for {
		var err error
		if elem == nil {
			err = c.anyValue()
		} else {
			err = c.value(elem)
		}
		if err != nil {
			return err
		}
		if done, err := c.next(']'); done || err != nil {
			return err
		}
	}
}

// anyValue checks a value of no particular type: well-formed, no
// duplicate keys, valid strings.
func (c *checker) anyValue() error {
	c.ws()
	if c.pos >= len(c.raw) {
		return c.syntax()
	}
	switch ch := c.raw[c.pos]; {
	case ch == '{':
		return c.members(nil)
	case ch == '[':
		return c.array(nil)
	case ch == '"':
		_, _, err := c.str()
		return err
	case ch == '-' || ch >= '0' && ch <= '9':
		_, err := c.numberLit()
		return err
	case c.lit("true") || c.lit("false") || c.lit("null"):
		return nil
	}
	return c.syntax()
}

// str scans a string at c.pos and returns its raw content (between the
// quotes) and whether it holds escapes. Invalid UTF-8, a lone surrogate
// escape and a raw control character are refused.
func (c *checker) str() (content []byte, escaped bool, err error) {
	r := c.raw
	start := c.pos + 1
	i := start
	for i < len(r) {
		b := r[i]
		switch {
		case b == '"':
			c.pos = i + 1
			return r[start:i], escaped, nil
		case b == '\\':
			escaped = true
			if i+1 >= len(r) {
				c.pos = len(r)
				return nil, false, c.syntax()
			}
			switch r[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				u, ok := hex4(r, i+2)
				if !ok {
					c.pos = i
					return nil, false, c.syntax()
				}
				i += 6
				switch {
				case u >= 0xDC00 && u <= 0xDFFF:
					return nil, false, c.badString()
				case u >= 0xD800 && u <= 0xDBFF:
					lo, ok := hex4(r, i+2)
					if i+1 >= len(r) || r[i] != '\\' || r[i+1] != 'u' || !ok || lo < 0xDC00 || lo > 0xDFFF {
						return nil, false, c.badString()
					}
					i += 6
				}
			default:
				c.pos = i
				return nil, false, c.syntax()
			}
		case b < 0x20:
			c.pos = i
			return nil, false, c.syntax()
		case b < utf8.RuneSelf:
			i++
		default:
			ru, size := utf8.DecodeRune(r[i:])
			if ru == utf8.RuneError && size == 1 {
				return nil, false, c.badString()
			}
			i += size
		}
	}
	c.pos = len(r)
	return nil, false, c.syntax()
}

func (c *checker) badString() error {
	return badJSON("malformed request: a string in %s is not valid UTF-8 (or holds a lone surrogate escape)", c.field())
}

func hex4(r []byte, i int) (rune, bool) {
	if i+4 > len(r) {
		return 0, false
	}
	var v rune
	for _, b := range r[i : i+4] {
		switch {
		case b >= '0' && b <= '9':
			v = v<<4 | rune(b-'0')
		case b >= 'a' && b <= 'f':
			v = v<<4 | rune(b-'a'+10)
		case b >= 'A' && b <= 'F':
			v = v<<4 | rune(b-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// unescape appends the content of a string str has already validated.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			dst = append(dst, s[i])
			continue
		}
		i++
		switch s[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			u, _ := hex4(s, i+1)
			i += 4
			if u >= 0xD800 && u <= 0xDBFF {
				lo, _ := hex4(s, i+3)
				u = 0x10000 + (u-0xD800)<<10 + (lo - 0xDC00)
				i += 6
			}
			dst = utf8.AppendRune(dst, u)
		default: // " \ /
			dst = append(dst, s[i])
		}
	}
	return dst
}

// b64val maps the standard base64 alphabet to its values; 0xFF elsewhere.
var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i, ch := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		t[ch] = byte(i)
	}
	return t
}()

// validStdBase64 accepts only canonical standard base64 with padding: no
// whitespace, no URL alphabet, no non-zero bits in the last character.
func validStdBase64(s []byte) bool {
	n := len(s)
	if n%4 != 0 {
		return false
	}
	if n == 0 {
		return true
	}
	pad := 0
	if s[n-1] == '=' {
		pad++
		if s[n-2] == '=' {
			pad++
		}
	}
	for _, ch := range s[:n-pad] {
		if b64val[ch] == 0xFF {
			return false
		}
	}
	switch pad {
	case 1:
		return b64val[s[n-2]]&0x03 == 0
	case 2:
		return b64val[s[n-3]]&0x0F == 0
	}
	return true
}

// present reports whether a top-level field appears in the body, to tell an
// explicit zero from an absent field.
func present(raw []byte, field string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(bytes.TrimSpace(raw), &obj) != nil {
		return false
	}
	_, ok := obj[field]
	return ok
}

func badJSON(format string, args ...any) error {
	return errs.New(errs.InvalidArgument, format, args...)
}

// checkExplicitZero refuses an explicit 0 where absence means a default and
// 0 is no valid value, as page_size does: queryAudit's limit (which would
// otherwise mean "the default" when given as 0).
func checkExplicitZero(raw []byte, v any) error {
	if q, ok := v.(*apitypes.QueryAuditRequest); ok && q.Limit == 0 && present(raw, "limit") {
		return badJSON("limit must be 1-%d", audit.MaxQueryLimit)
	}
	return nil
}
