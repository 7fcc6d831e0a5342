package cluster

import (
	"context"

	"github.com/etaggate/etaggate/proxy"
)

// Engine is the client as the engine sees it: proxy.Config's Cluster.
type Engine struct{ *Client }

// Lock takes rk's write lock; see Client.Lock.
func (e Engine) Lock(ctx context.Context, rk proxy.ResourceKey) (proxy.Lease, error) {
	l, err := e.Client.Lock(ctx, rk)
	if err != nil {
		return nil, err // not a nil *Lease in a non-nil interface
	}
	return l, nil
}

var (
	_ proxy.Cluster = Engine{}
	_ proxy.Lease   = (*Lease)(nil)
)
