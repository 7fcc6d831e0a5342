package proxy

// Outcome is what the engine did with a request, for metrics.
type Outcome uint8

// The outcomes a request can have.
const (
	Tagged               Outcome = iota // a read answered 200 with a computed or kept ETag
	Untagged                            // a read passed through untouched: non-200, stream or over max_body
	NotModified                         // a read answered 304
	PreconditionFailed                  // 412, the write (if any) not forwarded
	PreconditionRequired                // 428
	Malformed                           // 400 for a malformed entity-tag list
	CheckFailed                         // the current representation could not be read; write not forwarded
	Forwarded                           // a write whose preconditions held (or that had none) went upstream
	LockTimeout                         // 503: a write waited lock_wait for its resource's lock; not forwarded
	ClientGone                          // a write whose client left before it was forwarded; dropped
	Revalidated                         // a read answered 304 from the cache, nothing sent upstream
	NotFound                            // 404: a DELETE with If-Match tags on a missing resource; not forwarded
	LeaseLost                           // 503: a write's cluster lock was lost; stopped
	ClusterUnavailable                  // 503: the cluster could not be reached to lock a write; not forwarded
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"tagged", "untagged", "not_modified", "precondition_failed",
	"precondition_required", "malformed", "check_failed", "forwarded",
	"lock_timeout", "client_gone", "revalidated", "not_found", "lease_lost", "cluster_unavailable",
}

// String returns the outcome's metric label.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "unknown"
}

// Outcomes lists every Outcome, so that metrics can be initialised to zero.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

func (m *Middleware) observe(o Outcome) {
	if m.cfg.Observe != nil {
		m.cfg.Observe(o)
	}
}
