package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portico-proxy/portico/transport/tls"
)

const tlsCluster = `
static_resources:
  clusters:
  - name: secure
    connect_timeout: 2s
    load_assignment:
      cluster_name: secure
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8443 } } }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: backend.example.com
        max_session_keys: 4
        common_tls_context:
          alpn_protocols: [http/1.1]
          tls_params: { tls_maximum_protocol_version: TLSv1_3, ecdh_curves: [X25519] }
          validation_context:
            trusted_ca: { filename: CA_FILE }
          tls_certificates:
          - certificate_chain: { filename: EC_CERT }
            private_key: { filename: EC_KEY }
`

func upstreamConfig(f map[string]string, edit func(string) string) string {
	s := strings.NewReplacer("CA_FILE", f["ca"], "EC_CERT", f["ec_cert"], "EC_KEY", f["ec_key"]).Replace(tlsCluster)
	if edit != nil {
		s = edit(s)
	}
	return s
}

func TestUpstreamTLS(t *testing.T) {
	f := tlsFiles(t)
	for _, edit := range []func(string) string{nil,
		// The same context as the one entry of transport_socket_matches with an empty match.
		func(s string) string { return asMatch(s, "{}") },
	} {
		cfg, err := Parse([]byte(upstreamConfig(f, func(s string) string {
			if edit != nil {
				s = edit(s)
			}
			return s
		})), 1)
		if err != nil {
			t.Fatal(err)
		}
		fac, ok := cfg.Clusters[0].Config().TransportSocket.(*tls.UpstreamFactory)
		if !ok {
			t.Fatalf("transport socket %T", cfg.Clusters[0].Config().TransportSocket)
		}
		if fac.Name() != "envoy.transport_sockets.tls" {
			t.Error(fac.Name())
		}
		found := false
		for _, src := range cfg.StatsSources {
			if src.StatsFamily() == "cluster" && len(src.StatsLabels()) == 1 && src.StatsLabels()[0] == [2]string{"cluster", "secure"} {
				found = found || strings.Contains(typeName(src), "tls")
			}
		}
		if !found {
			t.Error("no cluster.secure.ssl stats source")
		}
		cfg.Close()
	}
	// A raw_buffer transport socket is the engine's own path.
	cfg, err := Parse([]byte(`
static_resources:
  clusters:
  - name: plain
    transport_socket:
      name: envoy.transport_sockets.raw_buffer
`), 1)
	if err != nil {
		t.Fatal(err)
	}
	if ts := cfg.Clusters[0].Config().TransportSocket; ts != nil {
		t.Fatalf("raw_buffer gave %T", ts)
	}
}

// asMatch moves the cluster's transport_socket into one transport_socket_matches entry.
func asMatch(s, match string) string {
	i := strings.Index(s, "    transport_socket:\n")
	rest := strings.ReplaceAll(s[i+len("    transport_socket:\n"):], "\n      ", "\n        ")
	return s[:i] + "    transport_socket_matches:\n    - name: m\n      match: " + match + "\n      transport_socket:\n  " + rest
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

func TestUpstreamTLSErrors(t *testing.T) {
	f := tlsFiles(t)
	const ts = "static_resources.clusters[0].transport_socket"
	const tc = ts + ".typed_config"
	cases := []struct {
		name string
		edit func(string) string
		path string
		msg  string
	}{
		{"downstream context", func(s string) string {
			return strings.Replace(s, "UpstreamTlsContext\n        sni: backend.example.com", "DownstreamTlsContext", 1)
		}, tc, "a cluster originates TLS with an UpstreamTlsContext"},
		{"two certificates", func(s string) string {
			return s + "          - certificate_chain: { filename: " + f["ec_cert"] + " }\n            private_key: { filename: " + f["ec_key"] + " }\n"
		}, tc + ".common_tls_context.tls_certificates[1]", "a client context takes at most one certificate"},
		{"min above default max", func(s string) string {
			return strings.Replace(s, "tls_maximum_protocol_version: TLSv1_3", "tls_minimum_protocol_version: TLSv1_3", 1)
		}, tc + ".common_tls_context.tls_params.tls_minimum_protocol_version", "is above tls_maximum_protocol_version"},
		{"bad CA", func(s string) string { return strings.Replace(s, f["ca"], f["garbage"], 1) },
			tc + ".common_tls_context.validation_context.trusted_ca.filename", "failed to load trusted CA certificates"},
		{"renegotiation", func(s string) string {
			return strings.Replace(s, "max_session_keys: 4", "allow_renegotiation: true", 1)
		}, tc + ".allow_renegotiation", "not supported by Portico"},
		{"matches with a match", func(s string) string { return asMatch(s, "{ tls: on }") }, "static_resources.clusters[0].transport_socket_matches", "transport_socket_matches with a match"},
		{"health checks over TLS", func(s string) string {
			return strings.Replace(s, "    connect_timeout: 2s\n", "    connect_timeout: 2s\n    health_checks: [{ timeout: 1s, interval: 5s, unhealthy_threshold: 2, healthy_threshold: 1, tcp_health_check: {} }]\n", 1)
		}, "static_resources.clusters[0].health_checks", "health checks of a TLS cluster"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(upstreamConfig(f, c.edit)), 1)
			if err == nil {
				cfg.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.path+": "+c.msg) {
				t.Fatalf("want %s: %s…, got\n%v", c.path, c.msg, err)
			}
		})
	}
}
