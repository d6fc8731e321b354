// Package acl owns Coffer's access control (SPEC §2 "Access control" and
// "Access policies (per secret)"): token generation and hashing, the policy
// model with its built-in policies and validation, rule evaluation, and the
// conditions a rule or a secret can carry (source CIDRs and weekly time
// windows in IANA time zones).
//
// The package is pure: it does no I/O, keeps no state beyond a cache of
// loaded time zones, and imports nothing of ours but apitypes, so the fsm can
// store its types and the api layer can call Evaluate and CheckAccessPolicy
// without either depending on the other.
//
// Evaluation in one sentence: a rule applies when its action, path and
// conditions all match; any applicable deny rule denies, otherwise the request
// is allowed iff some applicable allow rule exists. Conditions narrow when a
// rule applies, for both effects; a condition that can't be evaluated (data
// that slipped past validation) makes an allow rule not apply and a deny rule
// apply, so a broken condition never widens access.
//
// The time zone database is embedded (time/tzdata) because release images
// are built FROM scratch and have no /usr/share/zoneinfo; without it every
// window outside UTC would fail validation there.
package acl
