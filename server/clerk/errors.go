package clerk

import (
	"errors"
	"fmt"
	"net/url"

	sdk "github.com/clerk/clerk-sdk-go/v2"
)

var (
	// ErrConfig is wrapped by New when the Config is unusable.
	ErrConfig = errors.New("clerk: invalid configuration")

	// ErrSessionToken is wrapped by every refusal of a posted session token:
	// bad signature, expired, wrong issuer, and the more precise reasons
	// below, which wrap it too.
	ErrSessionToken = errors.New("clerk: session token refused")
	// ErrTemplateToken means a JWT template token was presented where a
	// session token is required (its "cat" header says so), or a session
	// token where a template token is required.
	ErrTemplateToken = errors.New("clerk: wrong token type")
	// ErrMissingClaim means a required claim (exp, sid, sub) is absent.
	ErrMissingClaim = errors.New("clerk: required claim missing")
	// ErrAuthorizedParty means the token's "azp" is not an authorized
	// party.
	ErrAuthorizedParty = errors.New("clerk: unauthorized party")
	// ErrSessionInactive means the Clerk session is not "active" (ended,
	// expired, revoked, removed …).
	ErrSessionInactive = errors.New("clerk: Clerk session is not active")

	// ErrClerkAPI is wrapped by failed Backend API calls; *APIError carries
	// the details.
	ErrClerkAPI = errors.New("clerk: Clerk API call failed")

	// ErrWebhookSignature, ErrWebhookTimestamp and ErrWebhookReplay are
	// why a webhook delivery was refused.
	ErrWebhookSignature = errors.New("clerk: webhook signature invalid")
	ErrWebhookTimestamp = errors.New("clerk: webhook timestamp outside the tolerance")
	ErrWebhookReplay    = errors.New("clerk: webhook message already delivered")
)

// tokenError is a refusal of a token: it matches ErrSessionToken and its
// precise kind with errors.Is, and unwraps to the cause.
type tokenError struct {
	kind   error // ErrTemplateToken, ErrMissingClaim, …; nil for others
	detail string
	cause  error
}

func (e *tokenError) Error() string {
	msg := ErrSessionToken.Error()
	if e.kind != nil {
		msg += ": " + e.kind.Error()[len("clerk: "):]
	}
	if e.detail != "" {
		msg += ": " + e.detail
	}
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *tokenError) Is(target error) bool {
	return target == ErrSessionToken || (e.kind != nil && target == e.kind)
}

func (e *tokenError) Unwrap() error { return e.cause }

func refuse(kind error, detail string, cause error) error {
	return &tokenError{kind: kind, detail: detail, cause: cause}
}

// APIError is a failed Clerk Backend API call. It holds no credentials.
type APIError struct {
	// Op is the SDK call, e.g. "session.Get".
	Op string
	// StatusCode is the HTTP status Clerk answered; 0 when no answer came.
	StatusCode int
	// Code is Clerk's error code ("resource_not_found", …), if any.
	Code string
	// TraceID is Clerk's clerk_trace_id, for support requests.
	TraceID string
	// Err is the transport error when no answer came.
	Err error
}

func (e *APIError) Error() string {
	switch {
	case e.StatusCode != 0 && e.Code != "":
		return fmt.Sprintf("clerk: %s: Clerk answered %d %s", e.Op, e.StatusCode, e.Code)
	case e.StatusCode != 0:
		return fmt.Sprintf("clerk: %s: Clerk answered %d", e.Op, e.StatusCode)
	case e.Err != nil:
		return fmt.Sprintf("clerk: %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("clerk: %s: unexpected answer from Clerk", e.Op)
}

// Is reports whether target is ErrClerkAPI.
func (e *APIError) Is(target error) bool { return target == ErrClerkAPI }

// Unwrap returns the transport error, if any.
func (e *APIError) Unwrap() error { return e.Err }

// apiError maps an SDK error to *APIError, dropping response text.
func apiError(op string, err error) *APIError {
	e := &APIError{Op: op}
	var sdkErr *sdk.APIErrorResponse
	var urlErr *url.Error
	switch {
	case errors.As(err, &sdkErr):
		e.StatusCode = sdkErr.HTTPStatusCode
		e.TraceID = sdkErr.TraceID
		if len(sdkErr.Errors) > 0 {
			e.Code = sdkErr.Errors[0].Code
		}
	case errors.As(err, &urlErr):
		e.Err = urlErr.Err // without the URL's query, which never holds secrets but may be long
	}
	return e
}
