package clerk

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	sdk "github.com/clerk/clerk-sdk-go/v2"
)

var (
	// ErrConfig is wrapped by New when the Config is unusable.
	ErrConfig = errors.New("clerk: invalid configuration")

	// ErrSessionToken is wrapped by every refusal of a posted session token:
	// bad signature, expired, wrong issuer, and the more precise reasons
	// below, which wrap it too.
	ErrSessionToken = errors.New("clerk: session token refused")
	// ErrTemplateToken means a Clerk token of the wrong kind was presented:
	// a JWT template, M2M or OAuth access token (or an opaque machine token
	// or API key) where a session token is required, or anything but a
	// Backend API-minted token of the configured JWT template where an
	// access token is required. Clerk's "cat" header tells the kinds apart
	// unless it is the ignore category; then claims do (sid only in session
	// tokens, a "mch_" sub in M2M tokens, typ "at+jwt" in OAuth tokens).
	ErrTemplateToken = errors.New("clerk: wrong token type")
	// ErrMissingClaim means a required claim (exp, sid, sub) is absent.
	ErrMissingClaim = errors.New("clerk: required claim missing")
	// ErrAuthorizedParty means the token's "azp" is not an authorized
	// party.
	ErrAuthorizedParty = errors.New("clerk: unauthorized party")
	// ErrSessionInactive means the Clerk session is not "active" (pending,
	// ended, expired, revoked, removed, abandoned, replaced …).
	ErrSessionInactive = errors.New("clerk: Clerk session is not active")
	// ErrSessionPending means the Clerk session is "pending": the user
	// signed in but has tasks to finish (choose an organization, reset the
	// password, set up MFA). Errors wrapping it wrap ErrSessionInactive
	// too.
	ErrSessionPending = errors.New("clerk: Clerk session has pending tasks")
	// ErrImpersonation means the Clerk session was started by impersonation
	// (an "act" claim) and Config.AllowImpersonation is false.
	ErrImpersonation = errors.New("clerk: impersonated Clerk session refused")
	// ErrUserBlocked means the Clerk user is banned or locked.
	ErrUserBlocked = errors.New("clerk: Clerk user is banned or locked")
	// ErrSetup means the Clerk instance is not set up as keyloop needs it
	// (the JWT template's claims, signing key or issuer); the message says
	// what to change in the Dashboard or the Config.
	ErrSetup = errors.New("clerk: Clerk instance set-up does not match")

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
// precise kinds with errors.Is, and unwraps to the cause.
type tokenError struct {
	kinds  []error // ErrTemplateToken, ErrMissingClaim, …; empty for others
	detail string
	cause  error
}

func (e *tokenError) Error() string {
	msg := ErrSessionToken.Error()
	if len(e.kinds) > 0 {
		msg += ": " + strings.TrimPrefix(e.kinds[0].Error(), "clerk: ")
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
	return target == ErrSessionToken || slices.Contains(e.kinds, target)
}

func (e *tokenError) Unwrap() error { return e.cause }

// refuse makes a tokenError; kind may be nil, more kinds may follow the
// cause.
func refuse(kind error, detail string, cause error, more ...error) error {
	e := &tokenError{detail: detail, cause: cause}
	if kind != nil {
		e.kinds = append(e.kinds, kind)
	}
	e.kinds = append(e.kinds, more...)
	return e
}

// sessionStatusError is a Clerk session in a status other than "active".
type sessionStatusError struct{ status string }

func (e *sessionStatusError) Error() string {
	if e.status == "pending" {
		return `clerk: Clerk session is not active: status "pending" (tasks to finish)`
	}
	return fmt.Sprintf("clerk: Clerk session is not active: status %q", e.status)
}

func (e *sessionStatusError) Is(target error) bool {
	return target == ErrSessionInactive || (target == ErrSessionPending && e.status == "pending")
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
