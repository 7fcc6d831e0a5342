package caddymodule

import (
	"fmt"

	"github.com/etaggate/etaggate/hashing"
)

// semantic compiles json_ignore or json_only; nil when neither is set.
func (e *ETag) semantic() (*hashing.Semantic, error) {
	if len(e.JSONIgnore) == 0 && len(e.JSONOnly) == 0 {
		return nil, nil
	}
	ignore, err := parsePointers("json_ignore", e.JSONIgnore)
	if err != nil {
		return nil, err
	}
	only, err := parsePointers("json_only", e.JSONOnly)
	if err != nil {
		return nil, err
	}
	return hashing.NewSemantic(ignore, only)
}

func parsePointers(option string, list []string) ([]hashing.Pointer, error) {
	ptrs := make([]hashing.Pointer, 0, len(list))
	for _, s := range list {
		p, err := hashing.ParsePointer(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", option, err)
		}
		ptrs = append(ptrs, p)
	}
	return ptrs, nil
}
