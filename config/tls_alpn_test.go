package config

import (
	"strings"
	"testing"
)

// A chain whose HTTP connection manager speaks HTTP/1.1 does not advertise h2 (a client
// that negotiated it would fail); the others it keeps, with a warning naming it. A
// tcp_proxy or echo chain keeps h2: the bytes go on untouched.
func TestDownstreamTLSALPNDropsH2ForHCM(t *testing.T) {
	f := tlsFiles(t)
	const hcm = `      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: https
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200 }
`
	const echo = `      - name: envoy.filters.network.echo
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
`
	const path = "static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.alpn_protocols[0]"
	for _, tc := range []struct {
		name string
		edit func(string) string
		warn bool
	}{
		{"hcm", func(s string) string { return strings.Replace(s, echo, hcm, 1) }, true},
		{"echo", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tlsConfig(t, f, tc.edit)), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer cfg.Close()
			warned := false
			for _, w := range cfg.Warnings {
				if strings.HasPrefix(w, path+": h2 is not advertised") {
					warned = true
				}
			}
			if warned != tc.warn {
				t.Errorf("h2 warning %v, want %v: %q", warned, tc.warn, cfg.Warnings)
			}
		})
	}
}
