package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"

	"github.com/cofferhq/coffer/errs"
)

// checkExactKeys rejects object keys that match a field only case-
// insensitively (encoding/json accepts "PATH" for "path"): a client that
// misspells a field must get InvalidArgument, not a silent default.
func checkExactKeys(raw []byte, t reflect.Type) error {
	if !hasUpperKey(raw) {
		return nil // every field name is lower case: nothing can match by case folding only
	}
	return checkExactKeysOf(raw, t)
}

// hasUpperKey scans the JSON text for an object key holding an upper-case
// letter (the only way a key can match a field case-insensitively, as our
// field names are lower case). It is a cheap pre-check on the hot path.
func hasUpperKey(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '"' {
			continue
		}
		upper := false
		j := i + 1
		for ; j < len(raw) && raw[j] != '"'; j++ {
			switch c := raw[j]; {
			case c == '\\':
				j++
			case c >= 'A' && c <= 'Z':
				upper = true
			}
		}
		k := j + 1
		for k < len(raw) && (raw[k] == ' ' || raw[k] == '\t' || raw[k] == '\n' || raw[k] == '\r') {
			k++
		}
		if upper && k < len(raw) && raw[k] == ':' {
			return true
		}
		i = j
	}
	return false
}

func checkExactKeysOf(raw []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t.PkgPath() == "time" {
			return nil
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil // not an object: the typed decode reports it
		}
		fields := jsonFields(t)
		for k, v := range obj {
			ft, ok := fields[k]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, k) {
						return errs.New(errs.InvalidArgument, "malformed request: unknown field %q (did you mean %q?)", k, name)
					}
				}
				continue // truly unknown: DisallowUnknownFields reports it
			}
			if err := checkExactKeysOf(v, ft); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			return nil
		}
		for _, v := range arr {
			if err := checkExactKeysOf(v, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil
		}
		for _, v := range obj {
			if err := checkExactKeysOf(v, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps a struct's JSON names (embedded structs flattened) to types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
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
