package config

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/portico-proxy/portico/http/route"
)

// previousHostsName is the retry host predicate Portico implements.
const previousHostsName = "envoy.retry_host_predicates.previous_hosts"

// routeConfig translates a RouteConfiguration found at `at` (an HTTP connection manager's
// route_config) into a route table. Every problem is reported at its field; the table is
// returned only when there is none under `at` (earlier stages' errors included). Cluster
// names are not checked here: see routeClusters.
func (t *translator) routeConfig(rc *routev3.RouteConfiguration, at string) (*route.Table, bool) {
	cfg := route.Config{
		Name:                               rc.GetName(),
		InternalOnlyHeaders:                rc.GetInternalOnlyHeaders(),
		MostSpecificHeaderMutationsWins:    rc.GetMostSpecificHeaderMutationsWins(),
		IgnorePortInHostMatching:           rc.GetIgnorePortInHostMatching(),
		IgnorePathParametersInPathMatching: rc.GetIgnorePathParametersInPathMatching(),
		HeaderMutations: t.headerMutations(at, rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(),
			rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove()),
	}
	if v := rc.GetMaxDirectResponseBodySizeBytes(); v != nil {
		cfg.MaxDirectResponseBodySize = int(v.GetValue())
		if cfg.MaxDirectResponseBodySize == 0 {
			cfg.MaxDirectResponseBodySize = -1 // explicitly no body at all
		}
	}
	for i, vh := range rc.GetVirtualHosts() {
		cfg.VirtualHosts = append(cfg.VirtualHosts, t.virtualHost(vh, index(field(at, "virtual_hosts"), i)))
	}
	tbl, err := route.New(cfg)
	if err != nil {
		es, _ := err.(route.Errors)
		for _, e := range es {
			p := field(at, e.Path)
			// A problem already reported there (by validation, or by the translation
			// above, which leaves a placeholder) would only be repeated.
			if !t.c.errorsUnder(p) {
				t.errorf(p, "%s", e.Msg)
			}
		}
		if len(es) == 0 {
			t.errorf(at, "%v", err)
		}
	}
	if tbl == nil || t.c.errorsUnder(at) {
		return nil, false
	}
	return tbl, true
}

// routeClusters checks the static cluster names a route configuration refers to
// (route.cluster and weighted_clusters.clusters[].name; cluster_header names are only
// known at request time) against the bootstrap's clusters, each unknown one reported at
// its field. It reads the proto, so that it reports in the same round as routeConfig even
// when the table could not be built. As in Envoy, validate_clusters: false turns the check
// off (such a route then answers cluster_not_found_response_code).
func (t *translator) routeClusters(rc *routev3.RouteConfiguration, at string) bool {
	if v := rc.GetValidateClusters(); v != nil && !v.GetValue() {
		return true
	}
	ok := true
	check := func(name, p string) {
		c, defined := t.clusters[name]
		switch {
		case !defined:
			t.errorf(p, "cluster %q is not defined (%s)", name, t.definedClusters())
			ok = false
		case c == nil:
			ok = false // the cluster itself has errors, reported at its definition
		}
	}
	for i, vh := range rc.GetVirtualHosts() {
		vat := index(field(at, "virtual_hosts"), i)
		for j, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if a == nil {
				continue
			}
			rat := field(index(field(vat, "routes"), j), "route")
			switch c := a.GetClusterSpecifier().(type) {
			case *routev3.RouteAction_Cluster:
				check(c.Cluster, field(rat, "cluster"))
			case *routev3.RouteAction_WeightedClusters:
				for k, cw := range c.WeightedClusters.GetClusters() {
					if cw.GetName() != "" {
						check(cw.GetName(), field(index(field(field(rat, "weighted_clusters"), "clusters"), k), "name"))
					}
				}
			}
		}
	}
	return ok
}

func (t *translator) virtualHost(vh *routev3.VirtualHost, at string) route.VirtualHostConfig {
	out := route.VirtualHostConfig{
		Name:    vh.GetName(),
		Domains: vh.GetDomains(),
		HeaderMutations: t.headerMutations(at, vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove(),
			vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove()),
	}
	if p := vh.GetRetryPolicy(); p != nil {
		out.RetryPolicy = t.retryPolicy(p, field(at, "retry_policy"))
	}
	for i, r := range vh.GetRoutes() {
		out.Routes = append(out.Routes, t.route(r, index(field(at, "routes"), i)))
	}
	return out
}

func (t *translator) route(r *routev3.Route, at string) route.RouteConfig {
	out := route.RouteConfig{
		Name:  r.GetName(),
		Match: t.routeMatch(r.GetMatch(), field(at, "match")),
		HeaderMutations: t.headerMutations(at, r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(),
			r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove()),
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		out.Route = t.routeAction(a.Route, field(at, "route"))
	case *routev3.Route_Redirect:
		out.Redirect = t.redirectAction(a.Redirect, field(at, "redirect"))
	case *routev3.Route_DirectResponse:
		out.DirectResponse = t.directResponse(a.DirectResponse, field(at, "direct_response"))
	default:
		// Unset: protoc-gen-validate reported it; another member was reported as
		// unsupported. A placeholder keeps the indexes and adds no error.
		out.DirectResponse = &route.DirectResponse{Status: 200}
	}
	return out
}

func (t *translator) routeMatch(m *routev3.RouteMatch, at string) route.Match {
	var out route.Match
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.PathKind, out.Path = route.PathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.PathKind, out.Path = route.PathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		out.PathKind, out.Path = route.PathSafeRegex, p.SafeRegex.GetRegex()
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.PathKind, out.Path = route.PathSeparatedPrefix, p.PathSeparatedPrefix
	default:
		out.PathKind, out.Path = route.PathPrefix, "/" // reported (required, or not supported)
	}
	if v := m.GetCaseSensitive(); v != nil {
		out.CaseInsensitive = !v.GetValue()
	}
	for _, h := range m.GetHeaders() {
		out.Headers = append(out.Headers, headerMatcher(h))
	}
	for _, q := range m.GetQueryParameters() {
		qm := route.QueryParameterMatcher{Name: q.GetName()}
		if s := q.GetStringMatch(); s != nil {
			sm := stringMatcher(s)
			qm.String = &sm
		}
		// present_match (true or false) and no specifier are both a presence match in
		// Envoy.
		out.QueryParameters = append(out.QueryParameters, qm)
	}
	return out
}

// headerMatcher keeps the deprecated forms as their own kinds so that errors name the
// field that was written.
func headerMatcher(h *routev3.HeaderMatcher) route.HeaderMatcher {
	out := route.HeaderMatcher{
		Name:                      h.GetName(),
		InvertMatch:               h.GetInvertMatch(),
		TreatMissingHeaderAsEmpty: h.GetTreatMissingHeaderAsEmpty(),
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		out.Kind, out.String = route.HeaderString, stringMatcher(s.StringMatch)
	case *routev3.HeaderMatcher_PresentMatch:
		out.Kind, out.PresentMatch = route.HeaderPresent, s.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		//lint:ignore SA1019 deprecated but supported, as Envoy still reads it
		out.Kind, out.Value = route.HeaderExact, s.ExactMatch
	case *routev3.HeaderMatcher_SafeRegexMatch:
		//lint:ignore SA1019 deprecated but supported, as Envoy still reads it
		out.Kind, out.Value = route.HeaderSafeRegex, s.SafeRegexMatch.GetRegex()
	case *routev3.HeaderMatcher_PrefixMatch:
		//lint:ignore SA1019 deprecated but supported, as Envoy still reads it
		out.Kind, out.Value = route.HeaderPrefix, s.PrefixMatch
	case *routev3.HeaderMatcher_SuffixMatch:
		//lint:ignore SA1019 deprecated but supported, as Envoy still reads it
		out.Kind, out.Value = route.HeaderSuffix, s.SuffixMatch
	case *routev3.HeaderMatcher_ContainsMatch:
		//lint:ignore SA1019 deprecated but supported, as Envoy still reads it
		out.Kind, out.Value = route.HeaderContains, s.ContainsMatch
	case *routev3.HeaderMatcher_RangeMatch:
		out.Kind, out.RangeStart, out.RangeEnd = route.HeaderRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	default:
		// No specifier: Envoy matches on presence.
		out.Kind, out.PresentMatch = route.HeaderPresent, true
	}
	return out
}

func stringMatcher(s *matcherv3.StringMatcher) route.StringMatcher {
	out := route.StringMatcher{IgnoreCase: s.GetIgnoreCase()}
	switch p := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Kind, out.Value = route.StringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Kind, out.Value = route.StringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Kind, out.Value = route.StringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Kind, out.Value = route.StringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		out.Kind, out.Value = route.StringSafeRegex, p.SafeRegex.GetRegex()
	}
	// custom is reported as unsupported; unset by protoc-gen-validate.
	return out
}

func (t *translator) routeAction(a *routev3.RouteAction, at string) *route.Action {
	out := &route.Action{
		PrefixRewrite: a.GetPrefixRewrite(),
		Timeout:       t.timeout(a.GetTimeout(), route.DefaultTimeout, field(at, "timeout"), true),
	}
	switch c := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		out.Cluster = c.Cluster
	case *routev3.RouteAction_ClusterHeader:
		out.ClusterHeader = c.ClusterHeader
	case *routev3.RouteAction_WeightedClusters:
		wc := c.WeightedClusters
		wat := field(at, "weighted_clusters")
		//lint:ignore SA1019 deprecated but supported: it must equal the sum if set
		if v := wc.GetTotalWeight(); v != nil {
			out.TotalWeight = v.GetValue()
		}
		out.RandomValueHeader = wc.GetHeaderName()
		for i, cw := range wc.GetClusters() {
			cat := index(field(wat, "clusters"), i)
			w := route.WeightedCluster{
				Name:               cw.GetName(),
				ClusterHeader:      cw.GetClusterHeader(),
				HostRewriteLiteral: cw.GetHostRewriteLiteral(),
				HeaderMutations: t.headerMutations(cat, cw.GetRequestHeadersToAdd(), cw.GetRequestHeadersToRemove(),
					cw.GetResponseHeadersToAdd(), cw.GetResponseHeadersToRemove()),
			}
			if v := cw.GetWeight(); v != nil {
				w.Weight = v.GetValue()
			} else {
				// Envoy reads it with PROTOBUF_GET_WRAPPED_REQUIRED.
				t.errorf(field(cat, "weight"), "required")
			}
			out.WeightedClusters = append(out.WeightedClusters, w)
		}
	default:
		// Unset (protoc-gen-validate) or unsupported (the subset check): a placeholder.
		out.Cluster = "-"
	}
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_SERVICE_UNAVAILABLE:
		out.ClusterNotFoundResponseCode = 503
	case routev3.RouteAction_NOT_FOUND:
		out.ClusterNotFoundResponseCode = 404
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		out.ClusterNotFoundResponseCode = 500
	default:
		out.ClusterNotFoundResponseCode = 503 // protoc-gen-validate: defined_only
	}
	if rw := a.GetRegexRewrite(); rw != nil {
		out.RegexRewrite = &route.RegexRewrite{Pattern: rw.GetPattern().GetRegex(), Substitution: rw.GetSubstitution()}
	}
	switch h := a.GetHostRewriteSpecifier().(type) {
	case *routev3.RouteAction_HostRewriteLiteral:
		out.HostRewriteLiteral = h.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		out.AutoHostRewrite = h.AutoHostRewrite.GetValue()
	case *routev3.RouteAction_HostRewriteHeader:
		out.HostRewriteHeader = h.HostRewriteHeader
	}
	if d := a.GetIdleTimeout(); d != nil {
		out.IdleTimeout = t.timeout(d, 0, field(at, "idle_timeout"), true)
		out.HasIdleTimeout = true
	}
	if p := a.GetRetryPolicy(); p != nil {
		out.RetryPolicy = t.retryPolicy(p, field(at, "retry_policy"))
	}
	return out
}

func (t *translator) retryPolicy(p *routev3.RetryPolicy, at string) *route.RetryPolicy {
	out := &route.RetryPolicy{
		NumRetries:                    1,
		PerTryTimeout:                 t.timeout(p.GetPerTryTimeout(), 0, field(at, "per_try_timeout"), true),
		RetriableStatusCodes:          p.GetRetriableStatusCodes(),
		HostSelectionRetryMaxAttempts: p.GetHostSelectionRetryMaxAttempts(),
	}
	on, err := route.ParseRetryOn(p.GetRetryOn())
	if err != nil {
		t.errorf(field(at, "retry_on"), "%v", err)
	}
	out.RetryOn = on
	if v := p.GetNumRetries(); v != nil {
		out.NumRetries = v.GetValue()
	}
	for i, hp := range p.GetRetryHostPredicate() {
		hat := index(field(at, "retry_host_predicate"), i)
		if tc := hp.GetTypedConfig(); tc != nil {
			m, ok := t.typedConfig(tc, field(hat, "typed_config"))
			if !ok {
				continue
			}
			if _, ok := m.(*previoushostsv3.PreviousHostsPredicate); !ok {
				t.errorf(field(hat, "typed_config"), "type %q is not a retry host predicate Portico supports (%s)", tc.GetTypeUrl(), previousHostsName)
				continue
			}
		} else if hp.GetName() != previousHostsName {
			t.errorf(field(hat, "name"), "unknown retry host predicate %q (Portico supports %s)", hp.GetName(), previousHostsName)
			continue
		}
		out.PreviousHosts = true
	}
	if b := p.GetRetryBackOff(); b != nil {
		bat := field(at, "retry_back_off")
		out.BackOffBase = t.timeout(b.GetBaseInterval(), 0, field(bat, "base_interval"), false)
		out.BackOffMax = t.timeout(b.GetMaxInterval(), 0, field(bat, "max_interval"), false)
		if out.BackOffBase > 0 && out.BackOffBase < time.Millisecond {
			out.BackOffBase = time.Millisecond // Envoy rounds up to 1 ms
		}
	}
	return out
}

func (t *translator) redirectAction(r *routev3.RedirectAction, at string) *route.Redirect {
	out := &route.Redirect{
		HostRedirect: r.GetHostRedirect(),
		PortRedirect: r.GetPortRedirect(),
		StripQuery:   r.GetStripQuery(),
	}
	switch s := r.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		out.HTTPSRedirect = s.HttpsRedirect
	case *routev3.RedirectAction_SchemeRedirect:
		out.SchemeRedirect = s.SchemeRedirect
	}
	switch p := r.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		out.PathRedirect = p.PathRedirect
	case *routev3.RedirectAction_PrefixRewrite:
		out.PrefixRewrite = p.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		out.RegexRewrite = &route.RegexRewrite{Pattern: p.RegexRewrite.GetPattern().GetRegex(), Substitution: p.RegexRewrite.GetSubstitution()}
	}
	switch r.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY:
		out.ResponseCode = 301
	case routev3.RedirectAction_FOUND:
		out.ResponseCode = 302
	case routev3.RedirectAction_SEE_OTHER:
		out.ResponseCode = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.ResponseCode = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.ResponseCode = 308
	default:
		out.ResponseCode = 301 // protoc-gen-validate: defined_only
	}
	return out
}

func (t *translator) directResponse(d *routev3.DirectResponseAction, at string) *route.DirectResponse {
	out := &route.DirectResponse{Status: int(d.GetStatus())}
	if out.Status < 200 || out.Status > 599 {
		out.Status = 200 // protoc-gen-validate: [200, 600)
	}
	if b := d.GetBody(); b != nil {
		out.Body, _, _ = t.dataSource(b, field(at, "body"))
	}
	return out
}

// headerMutations reads one level's headers_to_add/remove.
func (t *translator) headerMutations(at string, reqAdd []*corev3.HeaderValueOption, reqRemove []string,
	respAdd []*corev3.HeaderValueOption, respRemove []string) route.HeaderMutations {
	return route.HeaderMutations{
		RequestHeadersToAdd:     t.headerValueOptions(reqAdd, field(at, "request_headers_to_add")),
		RequestHeadersToRemove:  reqRemove,
		ResponseHeadersToAdd:    t.headerValueOptions(respAdd, field(at, "response_headers_to_add")),
		ResponseHeadersToRemove: respRemove,
	}
}

func (t *translator) headerValueOptions(opts []*corev3.HeaderValueOption, at string) []route.HeaderValueOption {
	var out []route.HeaderValueOption
	for i, o := range opts {
		oat := index(at, i)
		h := o.GetHeader()
		v := route.HeaderValueOption{Key: h.GetKey(), Value: h.GetValue(), KeepEmptyValue: o.GetKeepEmptyValue()}
		if v.Key == "" {
			v.Key = "x-invalid" // protoc-gen-validate reported it; a placeholder
		}
		switch a := o.GetAppendAction(); a {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			v.AppendAction = route.AppendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			v.AppendAction = route.AddIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			v.AppendAction = route.OverwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			v.AppendAction = route.OverwriteIfExists
		}
		//lint:ignore SA1019 deprecated but supported, with Envoy's mapping
		if ap := o.GetAppend(); ap != nil {
			if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
				t.errorf(field(oat, "append"), "both append and append_action are set, which Envoy does not allow")
			}
			// append: true appends, false overwrites (or adds).
			if !ap.GetValue() {
				v.AppendAction = route.OverwriteIfExistsOrAdd
			}
		}
		out = append(out, v)
	}
	return out
}
