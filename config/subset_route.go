package config

import "google.golang.org/protobuf/reflect/protoreflect"

// supportedRoute is the supported table for route configurations (see supported). What
// each field does, with Envoy's default and where Portico differs, is in docs/routes.md.
var supportedRoute = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.route.v3.RouteConfiguration": {
		// validate_clusters changes no traffic of a valid configuration: it only turns
		// the cluster-name check off (routeClusters).
		"name", "virtual_hosts", "internal_only_headers", "response_headers_to_add",
		"response_headers_to_remove", "request_headers_to_add", "request_headers_to_remove",
		"most_specific_header_mutations_wins", "validate_clusters",
		"max_direct_response_body_size_bytes", "ignore_port_in_host_matching",
		"ignore_path_parameters_in_path_matching",
	},
	"envoy.config.route.v3.VirtualHost": {
		"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove", "retry_policy",
	},
	"envoy.config.route.v3.Route": {
		"name", "match", "route", "redirect", "direct_response", "request_headers_to_add",
		"request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"decorator", // tracing only: accepted whole (see acceptedWhole)
	},
	"envoy.config.route.v3.RouteMatch": {
		"prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers",
		"query_parameters",
	},
	"envoy.config.route.v3.HeaderMatcher": {
		"name", "exact_match", "safe_regex_match", "range_match", "present_match",
		"prefix_match", "suffix_match", "contains_match", "string_match", "invert_match",
		"treat_missing_header_as_empty",
	},
	"envoy.config.route.v3.QueryParameterMatcher": {"name", "string_match", "present_match"},
	"envoy.type.matcher.v3.StringMatcher": {
		"exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case",
	},
	// google_re2 is the deprecated engine selector older files carry; RE2 is what
	// Portico (Go's regexp) implements anyway.
	"envoy.type.matcher.v3.RegexMatcher":            {"google_re2", "regex"},
	"envoy.type.matcher.v3.RegexMatcher.GoogleRE2":  {},
	"envoy.type.matcher.v3.RegexMatchAndSubstitute": {"pattern", "substitution"},
	"envoy.type.v3.Int64Range":                      {"start", "end"},
	"envoy.config.route.v3.RouteAction": {
		"cluster", "cluster_header", "weighted_clusters", "cluster_not_found_response_code",
		"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite",
		"host_rewrite_header", "timeout", "idle_timeout", "retry_policy",
	},
	"envoy.config.route.v3.WeightedCluster": {"clusters", "total_weight", "header_name"},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight": {
		"name", "cluster_header", "weight", "request_headers_to_add",
		"request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
		"host_rewrite_literal",
	},
	"envoy.config.route.v3.RetryPolicy": {
		"retry_on", "num_retries", "per_try_timeout", "retry_host_predicate",
		"host_selection_retry_max_attempts", "retriable_status_codes", "retry_back_off",
	},
	"envoy.config.route.v3.RetryPolicy.RetryHostPredicate":                 {"name", "typed_config"},
	"envoy.config.route.v3.RetryPolicy.RetryBackOff":                       {"base_interval", "max_interval"},
	"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate": {},
	"envoy.config.route.v3.RedirectAction": {
		"https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect",
		"prefix_rewrite", "regex_rewrite", "response_code", "strip_query",
	},
	"envoy.config.route.v3.DirectResponseAction": {"status", "body"},
	"envoy.config.core.v3.HeaderValueOption":     {"header", "append", "append_action", "keep_empty_value"},
	// raw_value is not: Envoy's header parser formats value only.
	"envoy.config.core.v3.HeaderValue": {"key", "value"},
}
