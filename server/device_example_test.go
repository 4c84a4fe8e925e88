package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/keyloop/keyloop/server"
)

// A backend that also offers the device flow (RFC 8628) to mytool: the CLI
// asks for a code, shows it with the verification URI, and polls.
func ExampleDeviceFlowConfig() {
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	key, _ := server.GenerateKey()
	minter, _ := server.NewSelfSigned(server.SelfSignedConfig{Issuer: issuer, Key: key})
	dev, _ := server.NewDevAuthenticator(server.DevConfig{Key: []byte(strings.Repeat("k", 32))})
	h, err := server.New(server.Config{
		Issuer:        issuer,
		Clients:       []server.Client{{ID: "mytool", Name: "mytool", DeviceFlow: true}},
		Authenticator: dev,
		Minter:        minter,
		DeviceFlow:    server.DeviceFlowConfig{CodeTTL: 15 * time.Minute}, // the rest: defaults
	})
	if err != nil {
		panic(err)
	}
	defer h.Close()
	srv.Config.Handler = h
	srv.Start()
	defer srv.Close()

	resp, _ := http.PostForm(issuer+server.DeviceAuthorizationPath, url.Values{"client_id": {"mytool"}})
	var da struct {
		UserCode        string `json:"user_code"`
		VerificationURI string `json:"verification_uri"`
		ExpiresIn       int    `json:"expires_in"`
		Interval        int    `json:"interval"`
		DeviceCode      string `json:"device_code"`
	}
	json.NewDecoder(resp.Body).Decode(&da)
	resp.Body.Close()
	fmt.Println(strings.TrimPrefix(da.VerificationURI, issuer), len(da.UserCode), da.ExpiresIn, da.Interval)

	resp, _ = http.PostForm(issuer+server.TokenPath, url.Values{
		"grant_type": {server.DeviceCodeGrantType}, "device_code": {da.DeviceCode}, "client_id": {"mytool"},
	})
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, e.Error)
	// Output:
	// /oauth/device 9 900 5
	// 400 authorization_pending
}
