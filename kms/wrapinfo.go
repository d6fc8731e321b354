package kms

import "encoding/hex"

// WrappingFingerprint returns the fingerprint (see Fingerprint) of the root
// key that wrapped a WrapKeyMaterial blob, as named in the blob's header, or
// "" for a malformed blob. It lets a node say which root key it is missing.
func WrappingFingerprint(wrapped []byte) string {
	if len(wrapped) < wrapHeader || wrapped[0] != wrapFormatV1 {
		return ""
	}
	return hex.EncodeToString(wrapped[1:wrapHeader])
}
