// Package kms owns Coffer's key hierarchy and the cryptography of secret values.
//
// The hierarchy has three levels:
//
//   - Root keys (RootKeys): 32-byte AES keys read from the --root-key-file. They
//     never enter the Raft log, a snapshot, a log line or the API. The newest key
//     wraps; every loaded key can unwrap, so the root key can be rotated by
//     appending a line to the file and re-wrapping at leisure.
//   - KMS key material: one random 32-byte key per KMS key version
//     (NewKeyMaterial), stored in the replicated state only as the output of
//     WrapKeyMaterial. The wrap is bound to the key's name and version, so a
//     wrapped blob cannot be swapped onto another key or version.
//   - Data keys (DEKs): a fresh random 32-byte key per secret version (Seal).
//     The DEK encrypts the value with AES-256-GCM and is itself wrapped by the
//     KMS key material. Both are bound to caller-supplied associated data (the
//     secret's uid and path), so ciphertexts cannot be moved between secrets.
//     RewrapDEK moves a version to another key without touching its ciphertext.
//
// MaterialCache keeps unwrapped key material, and each key version's expanded
// AES-GCM key (KEK), in memory so hot read paths neither unwrap nor expand a
// key on every request.
//
// The package stores nothing and logs nothing. Errors never contain key bytes
// or their encodings, and RootKeys and MaterialCache print only a redacted
// summary under every fmt verb. Every authentication failure is reported as an
// error that wraps ErrDecrypt, whatever part of the data was altered.
package kms
