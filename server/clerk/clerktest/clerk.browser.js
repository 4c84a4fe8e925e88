// clerktest stand-in for Clerk's browser SDK (clerk-js v6). It exposes what
// keyloop's sign-in page uses, and behaves as clerk-js does where it
// matters (clerk/javascript packages/clerk-js src/index.browser.ts,
// core/clerk.ts, core/fapiClient.ts):
//   - the publishable key, proxy URL and satellite domain come from the
//     script tag's data-clerk-publishable-key, data-clerk-proxy-url and
//     data-clerk-domain;
//   - Frontend API calls go to the proxy URL when one is set, else to
//     https://clerk.<domain> on a production satellite, else to the host the
//     publishable key encodes (plain http here, the scheme the script was
//     loaded with);
//   - load({isSatellite, signInUrl}) refuses what clerk-js refuses: a
//     satellite without domain or proxy URL, a development satellite
//     without signInUrl, a signInUrl that is not absolute or is on the
//     page's own origin;
//   - Clerk.session is set for active and pending sessions, Clerk.isSignedIn
//     is false for a pending one, and session.currentTask names its task;
//   - session.getToken() returns the cached last active token (minted for
//     whichever origin last used the session) unless skipCache is set;
//     getToken({template}) mints a JWT template token through the Frontend
//     API;
//   - redirectToSignIn goes to the satellite's signInUrl or the hosted sign-in
//     page; redirectToTasks goes to the sign-in page's task route;
//   - a satellite that is signed out (its __client_uat cookie is 0 or absent)
//     and has not just synced (no __clerk_synced=true in its URL) syncs with
//     the primary domain first, as clerk-js #shouldSyncWithPrimary does:
//     load() navigates to the primary's signInUrl with __clerk_satellite_url
//     (development) or to the Frontend API's /v1/client/sync with
//     redirect_url (production), and returns with Clerk.loaded still false;
//   - once loaded, __client_uat records whether the browser is signed in and
//     __clerk_synced is removed from the URL (clerk-js
//     #clearClerkQueryParams).
(function () {
  "use strict";
  var script = document.currentScript;
  function attr(name) {
    return (script && script.getAttribute(name)) || "";
  }
  var pk = attr("data-clerk-publishable-key");
  var m = /^pk_(test|live)_(.+)$/.exec(pk);
  if (!m) {
    throw new Error("Clerk: missing or malformed data-clerk-publishable-key");
  }
  var production = m[1] === "live";
  var scheme = new URL(script.src).protocol;
  var keyHost = atob(m[2]).replace(/\$$/, "");
  var proxyUrl = attr("data-clerk-proxy-url").replace(/\/$/, "");
  var domain = attr("data-clerk-domain");
  if (proxyUrl && !/^https?:\/\//.test(proxyUrl)) {
    proxyUrl = new URL(proxyUrl, window.location.href).href.replace(/\/$/, "");
  }
  var accountsBase = scheme + "//" + keyHost; // the hosted sign-in page
  var options = {};

  function fapi() {
    if (proxyUrl) return proxyUrl;
    if (production && domain) return "https://clerk." + domain.replace(/^https?:\/\//, "");
    return scheme + "//" + keyHost;
  }

  function jwtExp(jwt) {
    try {
      var p = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(p)).exp * 1000;
    } catch (e) {
      return 0;
    }
  }

  async function post(path) {
    var res = await fetch(fapi() + path, { method: "POST", credentials: "include" });
    if (res.status === 401) return null; // signed out
    if (!res.ok) throw new Error("Clerk: token request failed with status " + res.status);
    return (await res.json()).jwt;
  }

  function makeSession(s) {
    var emails = s.user.email_addresses || [];
    var primary = null;
    for (var i = 0; i < emails.length; i++) {
      if (emails[i].id === s.user.primary_email_address_id) primary = { emailAddress: emails[i].email_address };
    }
    var user = { id: s.user.id, primaryEmailAddress: primary, firstName: s.user.first_name, lastName: s.user.last_name };
    var cached = s.last_active_token ? s.last_active_token.jwt : null;
    return {
      id: s.id,
      status: s.status,
      user: user,
      actor: s.actor || null,
      currentTask: s.current_task || (s.tasks && s.tasks.length ? s.tasks[0] : null),
      getToken: async function (opts) {
        opts = opts || {};
        var id = encodeURIComponent(s.id);
        if (opts.template) return post("/v1/client/sessions/" + id + "/tokens/" + encodeURIComponent(opts.template));
        if (!opts.skipCache && cached && jwtExp(cached) - Date.now() > 10000) return cached;
        cached = await post("/v1/client/sessions/" + id + "/tokens");
        return cached;
      },
    };
  }

  function back(o) {
    return o.redirectUrl || o.signInForceRedirectUrl || o.signInFallbackRedirectUrl || window.location.href;
  }

  function clientUat() {
    var m = /(?:^|;\s*)__client_uat=(\d+)/.exec(document.cookie);
    return m ? Number(m[1]) : 0;
  }

  function syncUrl() {
    if (!production) {
      var u = new URL(options.signInUrl);
      u.searchParams.set("__clerk_satellite_url", window.location.href);
      return u.href;
    }
    return fapi() + "/v1/client/sync?redirect_url=" + encodeURIComponent(window.location.href);
  }

  window.Clerk = {
    loaded: false,
    user: null,
    session: null,
    get isSignedIn() {
      return !!this.session && this.session.status !== "pending";
    },
    get isSatellite() {
      return !!options.isSatellite;
    },
    get proxyUrl() {
      return proxyUrl;
    },
    get domain() {
      return domain;
    },
    load: async function (opts) {
      options = opts || {};
      if (options.isSatellite) {
        if (!production && !options.signInUrl) {
          throw new Error("Clerk: Missing signInUrl. A satellite application needs to specify the signInUrl for development instances.");
        }
        if (!proxyUrl && !domain) {
          throw new Error("Clerk: Missing domain and proxyUrl. A satellite application needs to specify a domain or a proxyUrl.");
        }
      }
      if (options.signInUrl) {
        var u;
        try {
          u = new URL(options.signInUrl);
        } catch (e) {
          throw new Error("Clerk: The signInUrl needs to have a absolute url format.");
        }
        if (options.isSatellite && u.origin === window.location.origin) {
          throw new Error("Clerk: The signInUrl needs to be on a different origin than your satellite application.");
        }
      }
      var params = new URLSearchParams(window.location.search);
      if (options.isSatellite && params.get("__clerk_synced") !== "true" && clientUat() <= 0) {
        // Not loaded: the browser is on its way to the primary domain.
        window.location.assign(syncUrl());
        return;
      }
      var res = await fetch(fapi() + "/v1/client", { credentials: "include" });
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
      document.cookie = "__client_uat=" + (this.session ? Math.floor(Date.now() / 1000) : 0) + "; path=/; SameSite=Lax";
      if (params.has("__clerk_synced")) {
        params.delete("__clerk_synced");
        var clean = new URL(window.location.href);
        clean.search = params.toString();
        window.history.replaceState(window.history.state, "", clean.href);
      }
      this.loaded = true;
    },
    buildSignInUrl: function (o) {
      var base = options.signInUrl || accountsBase + "/sign-in";
      var u = new URL(base);
      u.searchParams.set("redirect_url", back(o || {}));
      return u.href;
    },
    redirectToSignIn: function (o) {
      window.location.assign(this.buildSignInUrl(o));
      return new Promise(function () {});
    },
    redirectToTasks: function (o) {
      var task = this.session && this.session.currentTask;
      if (!task) return Promise.resolve();
      window.location.assign(this.buildSignInUrl(o) + "#/tasks/" + encodeURIComponent(task.key));
      return new Promise(function () {});
    },
  };
})();
