module portico-istiod-harness

go 1.26

require (
	github.com/portico-proxy/portico v0.0.0
	istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
)

replace github.com/portico-proxy/portico => ../../../..
