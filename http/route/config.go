// Package route is Envoy's HTTP route table: virtual hosts chosen by the request's
// authority, routes matched first-match in order on path, headers and query parameters,
// and the actions they take (forward to a cluster, redirect, answer directly), with the
// header mutations of each level.
//
// A Table is built once from a Config (plain Go structs mirroring Envoy's
// RouteConfiguration, see config.routeConfig for the translation from protobuf), is
// immutable afterwards and is shared by every worker. Selecting a route for a request
// (Select) and computing what the route does (PickCluster, AppendRewrittenPath,
// AppendRedirectLocation, ApplyRequestHeaders, ApplyResponseHeaders) allocate nothing in
// the common cases; the exceptions are documented where they are.
//
// Field paths in errors from New are those of Envoy's RouteConfiguration
// (`virtual_hosts[1].routes[0].match.safe_regex.regex`), so that the configuration
// loader can point at the field of the file.
package route

import "time"

// Defaults Envoy uses where a field is unset.
const (
	// DefaultTimeout is RouteAction.timeout's default.
	DefaultTimeout = 15 * time.Second
	// DefaultRetryBackOffBase is RetryPolicy.retry_back_off.base_interval's default; the
	// maximum defaults to 10 times the base.
	DefaultRetryBackOffBase = 25 * time.Millisecond
	// DefaultMaxDirectResponseBodySize is max_direct_response_body_size_bytes's default.
	DefaultMaxDirectResponseBodySize = 4096
)

// Config is a route configuration (Envoy's RouteConfiguration).
type Config struct {
	Name         string
	VirtualHosts []VirtualHostConfig
	// InternalOnlyHeaders are removed by the connection manager from requests that are
	// not internal; the table only keeps the list (Table.InternalOnlyHeaders).
	InternalOnlyHeaders []string
	HeaderMutations
	// MostSpecificHeaderMutationsWins evaluates the route configuration's mutations
	// first and the route's last, so that the most specific level's overwrite wins.
	MostSpecificHeaderMutationsWins bool
	// IgnorePortInHostMatching strips the port from the authority before the domains
	// are compared.
	IgnorePortInHostMatching bool
	// IgnorePathParametersInPathMatching cuts the path at its first ';' before path
	// matching (not before rewriting).
	IgnorePathParametersInPathMatching bool
	// MaxDirectResponseBodySize bounds direct_response bodies; 0 means
	// DefaultMaxDirectResponseBodySize, a negative value no body at all.
	MaxDirectResponseBodySize int
}

// HeaderMutations are the header additions and removals of one level (route
// configuration, virtual host, route, weighted cluster).
type HeaderMutations struct {
	RequestHeadersToAdd     []HeaderValueOption
	RequestHeadersToRemove  []string
	ResponseHeadersToAdd    []HeaderValueOption
	ResponseHeadersToRemove []string
}

// AppendAction is HeaderValueOption.append_action.
type AppendAction uint8

// Append actions, in the proto's order (APPEND_IF_EXISTS_OR_ADD is the default).
const (
	AppendIfExistsOrAdd AppendAction = iota
	AddIfAbsent
	OverwriteIfExistsOrAdd
	OverwriteIfExists
)

var appendActionNames = [...]string{"APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS"}

func (a AppendAction) String() string {
	if int(a) < len(appendActionNames) {
		return appendActionNames[a]
	}
	return "AppendAction(?)"
}

// HeaderValueOption is one header to add. Value is an Envoy substitution format
// (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%REQ(x-foo)%` ...); a value without '%' is a literal
// and is used as is.
type HeaderValueOption struct {
	Key            string
	Value          string
	AppendAction   AppendAction
	KeepEmptyValue bool
}

// VirtualHostConfig is a virtual host.
type VirtualHostConfig struct {
	Name    string
	Domains []string
	Routes  []RouteConfig
	HeaderMutations
	// RetryPolicy applies to the routes that have none of their own.
	RetryPolicy *RetryPolicy
}

// RouteConfig is one route: a match and an action.
type RouteConfig struct {
	Name  string
	Match Match
	// Exactly one of Route, Redirect, DirectResponse.
	Route          *Action
	Redirect       *Redirect
	DirectResponse *DirectResponse
	HeaderMutations
}

// PathKind is the RouteMatch path specifier.
type PathKind uint8

// Path specifiers.
const (
	PathPrefix PathKind = iota
	PathExact
	PathSafeRegex
	PathSeparatedPrefix
)

var pathKindFields = [...]string{"prefix", "path", "safe_regex", "path_separated_prefix"}

// Match is a RouteMatch. All of its conditions must hold.
type Match struct {
	PathKind PathKind
	// Path is the prefix, the path, or the regex (RE2 syntax, matched against the whole
	// path without query and fragment).
	Path string
	// CaseInsensitive is case_sensitive: false (it has no effect on safe_regex, as in
	// Envoy). The zero value is Envoy's default.
	CaseInsensitive bool
	Headers         []HeaderMatcher
	QueryParameters []QueryParameterMatcher
}

// StringKind is the match_pattern of a StringMatcher.
type StringKind uint8

// String match patterns.
const (
	StringExact StringKind = iota
	StringPrefix
	StringSuffix
	StringContains
	StringSafeRegex
)

var stringKindFields = [...]string{"exact", "prefix", "suffix", "contains", "safe_regex"}

// StringMatcher is Envoy's type.matcher.v3.StringMatcher. IgnoreCase (ASCII) has no
// effect on SafeRegex, as in Envoy.
type StringMatcher struct {
	Kind       StringKind
	Value      string
	IgnoreCase bool
}

// HeaderMatchKind is the header_match_specifier of a HeaderMatcher, deprecated forms
// included (they keep their own kinds so that errors name the field that was written).
type HeaderMatchKind uint8

// Header match specifiers.
const (
	// HeaderPresent is present_match, and also a matcher with no specifier (then
	// PresentMatch must be true, as Envoy takes it).
	HeaderPresent   HeaderMatchKind = iota
	HeaderString                    // string_match
	HeaderExact                     // exact_match (deprecated; "" matches any value, as in Envoy)
	HeaderSafeRegex                 // safe_regex_match (deprecated)
	HeaderPrefix                    // prefix_match (deprecated)
	HeaderSuffix                    // suffix_match (deprecated)
	HeaderContains                  // contains_match (deprecated)
	HeaderRange                     // range_match: [RangeStart, RangeEnd) of a decimal integer value
)

var headerKindFields = [...]string{"present_match", "string_match", "exact_match", "safe_regex_match", "prefix_match", "suffix_match", "contains_match", "range_match"}

// HeaderMatcher is a HeaderMatcher. Several fields of the same name are matched as their
// values joined by ",", as Envoy does. Pseudo-headers (":method", ":path", ":authority",
// ":scheme") are matched like any other header.
type HeaderMatcher struct {
	Name string
	Kind HeaderMatchKind
	// Value is the text of the deprecated kinds (exact, regex, prefix, suffix, contains).
	Value        string
	String       StringMatcher // HeaderString
	PresentMatch bool          // HeaderPresent
	RangeStart   int64         // HeaderRange
	RangeEnd     int64
	InvertMatch  bool
	// TreatMissingHeaderAsEmpty matches a missing header as if it had an empty value.
	TreatMissingHeaderAsEmpty bool
}

// QueryParameterMatcher matches the first query parameter of that name (not
// percent-decoded, as in Envoy). A nil String is a presence match.
type QueryParameterMatcher struct {
	Name   string
	String *StringMatcher
}

// RegexRewrite is a RegexMatchAndSubstitute: every match of Pattern in the path (without
// query) is replaced by Substitution, where \0 .. \9 are capture groups and \\ is a
// backslash (RE2's syntax, which Envoy uses).
type RegexRewrite struct {
	Pattern      string
	Substitution string
}

// Action is a RouteAction: forward to a cluster.
type Action struct {
	// Exactly one of Cluster, ClusterHeader, WeightedClusters.
	Cluster       string
	ClusterHeader string
	// WeightedClusters are picked by a random value modulo the sum of the weights.
	WeightedClusters []WeightedCluster
	// TotalWeight, if not 0, must equal the sum of the weights (the deprecated
	// total_weight).
	TotalWeight uint32
	// RandomValueHeader names a request header whose decimal value replaces the caller's
	// random value when picking a weighted cluster (weighted_clusters.header_name).
	RandomValueHeader string
	// ClusterNotFoundResponseCode is the status when the cluster does not exist: 503
	// (the default, also for 0), 404 or 500.
	ClusterNotFoundResponseCode int

	PrefixRewrite      string
	RegexRewrite       *RegexRewrite
	HostRewriteLiteral string
	// AutoHostRewrite asks the router to set the authority to the chosen upstream host.
	AutoHostRewrite   bool
	HostRewriteHeader string

	// Timeout is the whole-request timeout; 0 disables it. The translator sets
	// DefaultTimeout when the field is unset.
	Timeout time.Duration
	// IdleTimeout overrides the connection manager's stream_idle_timeout when
	// HasIdleTimeout (0 then disables it).
	IdleTimeout    time.Duration
	HasIdleTimeout bool
	// RetryPolicy, if set, replaces the virtual host's.
	RetryPolicy *RetryPolicy
}

// WeightedCluster is a WeightedCluster.ClusterWeight.
type WeightedCluster struct {
	// Exactly one of Name, ClusterHeader.
	Name          string
	ClusterHeader string
	Weight        uint32
	// HostRewriteLiteral sets the authority when this cluster is chosen (before the
	// route's host rewrite, which wins if set).
	HostRewriteLiteral string
	HeaderMutations
}

// Redirect is a RedirectAction.
type Redirect struct {
	// SchemeRedirect replaces the scheme; HTTPSRedirect is scheme "https".
	SchemeRedirect string
	HTTPSRedirect  bool
	HostRedirect   string
	PortRedirect   uint32
	// At most one of PathRedirect, PrefixRewrite, RegexRewrite.
	PathRedirect  string
	PrefixRewrite string
	RegexRewrite  *RegexRewrite
	// ResponseCode is 301 (the default, also for 0), 302, 303, 307 or 308.
	ResponseCode int
	StripQuery   bool
}

// DirectResponse is a DirectResponseAction.
type DirectResponse struct {
	Status int
	Body   []byte
}

// RetryOn is a set of retry conditions (Envoy's retry_on / x-envoy-retry-on tokens).
type RetryOn uint32

// Retry conditions Portico implements.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
)

// RetryPolicy is a RetryPolicy.
type RetryPolicy struct {
	RetryOn RetryOn
	// NumRetries is the number of retries (Envoy's default is 1; the translator sets it).
	NumRetries uint32
	// PerTryTimeout bounds each attempt; 0: only the route's timeout applies.
	PerTryTimeout        time.Duration
	RetriableStatusCodes []uint32
	// PreviousHosts is the envoy.retry_host_predicates.previous_hosts predicate: a retry
	// avoids hosts already tried, re-selecting up to HostSelectionRetryMaxAttempts times.
	PreviousHosts                 bool
	HostSelectionRetryMaxAttempts int64
	// BackOffBase and BackOffMax are retry_back_off; zero values mean
	// DefaultRetryBackOffBase and 10 times the base.
	BackOffBase time.Duration
	BackOffMax  time.Duration
}
