// clerktest stand-in for Clerk's browser SDK (clerk-js). It exposes exactly
// what keyloop's sign-in page uses: Clerk.load(), Clerk.user, Clerk.session,
// Clerk.session.getToken() and Clerk.redirectToSignIn(options), talking to
// the fake's Frontend API with the "__client" cookie like clerk-js does.
(function () {
  "use strict";
  var script = document.currentScript;
  var pk = (script && script.getAttribute("data-clerk-publishable-key")) || "";
  var m = /^pk_(test|live)_(.+)$/.exec(pk);
  if (!m) {
    throw new Error("clerktest clerk.browser.js: missing or malformed data-clerk-publishable-key");
  }
  // The publishable key is base64(frontendApiHost + "$"); the fake serves
  // plain http, so the scheme comes from where this script was loaded.
  var host = atob(m[2]).replace(/\$$/, "");
  var fapi = new URL(script.src).protocol + "//" + host;

  function makeSession(s) {
    var emails = s.user.email_addresses || [];
    var primary = null;
    for (var i = 0; i < emails.length; i++) {
      if (emails[i].id === s.user.primary_email_address_id) primary = { emailAddress: emails[i].email_address };
    }
    var user = { id: s.user.id, primaryEmailAddress: primary, firstName: s.user.first_name, lastName: s.user.last_name };
    return {
      id: s.id,
      status: s.status,
      user: user,
      getToken: async function () {
        var res = await fetch(fapi + "/v1/client/sessions/" + encodeURIComponent(s.id) + "/tokens", {
          method: "POST",
          credentials: "include",
        });
        if (res.status === 401) return null; // signed out
        if (!res.ok) throw new Error("Clerk: token request failed with status " + res.status);
        return (await res.json()).jwt;
      },
    };
  }

  window.Clerk = {
    loaded: false,
    user: null,
    session: null,
    load: async function () {
      var res = await fetch(fapi + "/v1/client", { credentials: "include" });
      if (!res.ok) throw new Error("Clerk: failed to load the client, status " + res.status);
      var c = (await res.json()).response;
      this.user = null;
      this.session = null;
      if (c && c.sessions && c.sessions.length) {
        var s = c.sessions[0];
        for (var i = 0; i < c.sessions.length; i++) {
          if (c.sessions[i].id === c.last_active_session_id) s = c.sessions[i];
        }
        this.session = makeSession(s);
        this.user = this.session.user;
      }
      this.loaded = true;
    },
    redirectToSignIn: function (options) {
      var o = options || {};
      var back = o.signInForceRedirectUrl || o.signInFallbackRedirectUrl || window.location.href;
      window.location.assign(fapi + "/sign-in?redirect_url=" + encodeURIComponent(back));
      return new Promise(function () {});
    },
  };
})();
