package proxy

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/internal/problem"
)

// Test-only surface: the tests drive the engine through plain net/http and
// look at its lock table.

// LockedKeys returns how many resource keys are locked or waited for now.
func (m *Middleware) LockedKeys() int { return m.locks.Len() }

// Wrap adapts m to plain net/http in front of next.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	n := HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		next.ServeHTTP(w, r)
		return nil
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.ServeHTTP(w, r, n); err != nil {
			m.log.Error("request failed", requestFields(r, zap.Error(err))...)
			problem.Write(w, problem.New(m.gatewayStatus(err), err.Error()))
		}
	})
}
