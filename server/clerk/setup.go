package clerk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	sdk "github.com/clerk/clerk-sdk-go/v2"
)

// MaxTemplateLifetime is the longest JWT template lifetime CheckSetup
// accepts. Mint always sends expires_in_seconds, so the template's own
// lifetime only bounds the tokens a signed-in browser can mint from it
// through the Frontend API, without keyloop's consent: keep it at Clerk's
// default (60 seconds). While Config.TokenLifetime is longer,
// CheckAccessToken refuses tokens that live MaxTemplateLifetime or less.
const MaxTemplateLifetime = 5 * time.Minute

// CheckSetup reads the instance's JWT templates through the Backend API and
// checks the one access tokens are minted from against README's checklist:
// it exists; its claims carry TemplateClaim with the template's name, the
// configured Audience, and "act": "{{session.actor}}" when
// AllowImpersonation is on; its custom signing key is off; its lifetime is
// at most MaxTemplateLifetime. It returns nil, an error wrapping ErrSetup
// that lists every problem, or an error wrapping ErrClerkAPI when the
// Backend API could not be asked. A backend calls it once at start-up.
func (p *Provider) CheckSetup(ctx context.Context) error {
	tmpl, err := p.findTemplate(ctx, p.cfg.JWTTemplate)
	if err != nil {
		return err
	}
	name := p.cfg.JWTTemplate
	if tmpl == nil {
		return fmt.Errorf("%w: the instance has no JWT template %q (Dashboard → JWT templates → New template, or set CLERK_JWT_TEMPLATE)", ErrSetup, name)
	}
	var problems []string
	var claims map[string]any
	if err := json.Unmarshal(tmpl.Claims, &claims); err != nil {
		problems = append(problems, "its claims are not a JSON object")
	}
	if v, _ := claims[TemplateClaim].(string); v != name {
		problems = append(problems, fmt.Sprintf(`add the claim "%s": "%s"`, TemplateClaim, name))
	}
	if p.cfg.Audience != "" {
		found := false
		for _, a := range audience(claims) {
			found = found || a == p.cfg.Audience
		}
		if !found {
			problems = append(problems, fmt.Sprintf(`add "aud": %q (clerk.Config.Audience)`, p.cfg.Audience))
		}
	}
	if p.cfg.AllowImpersonation && claims["act"] != "{{session.actor}}" {
		problems = append(problems, `add "act": "{{session.actor}}" (AllowImpersonation is on)`)
	}
	if tmpl.CustomSigningKey {
		problems = append(problems, "turn off the custom signing key (clients verify against the instance's JWKS)")
	}
	if life := time.Duration(tmpl.Lifetime) * time.Second; life > MaxTemplateLifetime {
		problems = append(problems, fmt.Sprintf("lower the token lifetime from %v to 60 seconds (keyloop sends its own; the template's only bounds tokens a browser mints itself)", life))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: JWT template %q (Dashboard → JWT templates → %s): %s", ErrSetup, name, name, strings.Join(problems, "; "))
	}
	return nil
}

// findTemplate pages through GET /jwt_templates for the template named
// name; nil when there is none.
func (p *Provider) findTemplate(ctx context.Context, name string) (*sdk.JWTTemplate, error) {
	const limit = 100
	for offset := 0; ; offset += limit {
		req := sdk.NewAPIRequest(http.MethodGet, fmt.Sprintf("/jwt_templates?paginated=true&limit=%d&offset=%d", limit, offset))
		list := &sdk.JWTTemplateList{}
		if err := p.templates.Backend.Call(ctx, req, list); err != nil {
			return nil, apiError("jwttemplate.List", err)
		}
		for _, t := range list.JWTTemplates {
			if t != nil && t.Name == name {
				return t, nil
			}
		}
		if len(list.JWTTemplates) < limit || int64(offset+limit) >= list.TotalCount {
			return nil, nil
		}
	}
}
