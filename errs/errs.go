// Package errs defines Coffer's typed errors and their API codes. Every layer
// returns *Error for domain failures; the HTTP layer maps Code to a status in
// one place (HTTPStatus), and the client maps it back.
package errs

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is an API error code of SPEC §2.
type Code string

const (
	InvalidArgument    Code = "InvalidArgument"
	Unauthenticated    Code = "Unauthenticated"
	PermissionDenied   Code = "PermissionDenied"
	NotFound           Code = "NotFound"
	AlreadyExists      Code = "AlreadyExists"
	FailedPrecondition Code = "FailedPrecondition"
	VersionMismatch    Code = "VersionMismatch"
	Gone               Code = "Gone"
	TooLarge           Code = "TooLarge"
	RateLimited        Code = "RateLimited"
	Unavailable        Code = "Unavailable"
	Internal           Code = "Internal"
)

// Error is a domain error with an API code and a human message. Messages must
// never contain a secret value, token or key material.
type Error struct {
	Code    Code   `msgpack:"c" json:"code"`
	Message string `msgpack:"m" json:"message"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// New returns an *Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err, Internal for errors that carry none, and ""
// for nil.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries the given code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// As converts any error to an *Error; unknown errors become Internal with
// their text (callers must only wrap errors whose text is safe to show).
func As(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: Internal, Message: err.Error()}
}

// HTTPStatus maps a code to its HTTP status (SPEC §2).
func HTTPStatus(c Code) int {
	switch c {
	case InvalidArgument:
		return http.StatusBadRequest
	case Unauthenticated:
		return http.StatusUnauthorized
	case PermissionDenied:
		return http.StatusForbidden
	case NotFound:
		return http.StatusNotFound
	case AlreadyExists, FailedPrecondition:
		return http.StatusConflict
	case VersionMismatch:
		return http.StatusPreconditionFailed
	case Gone:
		return http.StatusGone
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case RateLimited:
		return http.StatusTooManyRequests
	case Unavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// KnownCode reports whether c is one of the SPEC's codes.
func KnownCode(c Code) bool {
	switch c {
	case InvalidArgument, Unauthenticated, PermissionDenied, NotFound, AlreadyExists,
		FailedPrecondition, VersionMismatch, Gone, TooLarge, RateLimited, Unavailable, Internal:
		return true
	}
	return false
}
