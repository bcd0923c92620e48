package manager

import (
	"errors"

	"google.golang.org/protobuf/types/known/anypb"
)

// EDS: the endpoints of clusters of type EDS (ClusterLoadAssignment resources).

// endpointNames are the EDS service names the current clusters need, sorted; the ADS
// stream requests exactly these.
func (m *Manager) endpointNames() []string { return nil }

// applyEndpoints applies an EDS response; it returns the NACK's error, or nil.
func (m *Manager) applyEndpoints(version string, res []*anypb.Any) error {
	return errors.New("EDS is not supported by Portico yet")
}
