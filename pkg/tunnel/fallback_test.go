package tunnel

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/httpstream"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

func TestFallBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"apimachinery upgrade failure", &httpstream.UpgradeFailureError{Cause: errors.New("bad handshake")}, true},
		{"streaming upgrade failure", fmt.Errorf("dial: %w", &streamhttp.UpgradeFailureError{Cause: errors.New("bad handshake")}), true},
		{"connection refused", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
	} {
		if got := fallBack(tc.err); got != tc.want {
			t.Errorf("%s: fallBack = %v, want %v", tc.name, got, tc.want)
		}
	}
}
