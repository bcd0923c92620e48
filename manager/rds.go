package manager

import (
	"errors"

	"google.golang.org/protobuf/types/known/anypb"
)

// RDS: the route configurations of HTTP connection managers configured with rds.

// routeNames are the route configuration names the current listeners need, sorted; the
// ADS stream requests exactly these.
func (m *Manager) routeNames() []string { return nil }

// applyRoutes applies an RDS response; it returns the NACK's error, or nil.
func (m *Manager) applyRoutes(version string, res []*anypb.Any) error {
	return errors.New("RDS is not supported by Portico yet")
}
