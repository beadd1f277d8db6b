package readbatch

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// lowatRecorder stands in for the socket option in the batcher's logic tests.
type lowatRecorder struct {
	mu   sync.Mutex
	set  []int
	fail bool
}

func (r *lowatRecorder) setLowat(v int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return errors.New("socket closed")
	}
	r.set = append(r.set, v)
	return nil
}

func (r *lowatRecorder) calls() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.set)
}

func TestReadBatcherMarks(t *testing.T) {
	type read struct {
		after time.Duration // since the previous read
		n     int
	}
	repeat := func(count int, r read) []read {
		rs := make([]read, count)
		for i := range rs {
			rs[i] = r
		}
		return rs
	}
	tests := []struct {
		name  string
		reads []read
		fail  bool
		// wait after the last read, before checking
		wait time.Duration
		want []int
	}{
		{
			name:  "requests and replies never batch",
			reads: repeat(2000, read{after: 200 * time.Microsecond, n: 512}),
			wait:  time.Second,
			want:  nil,
		},
		{
			name:  "a bulk transfer batches and stops when reads stop",
			reads: repeat(400, read{after: 20 * time.Microsecond, n: 8 << 10}),
			wait:  time.Second,
			want:  []int{Lowat, 1},
		},
		{
			name:  "the mark stays up while reads go on",
			reads: repeat(400, read{after: 20 * time.Microsecond, n: 8 << 10}),
			wait:  Idle / 2,
			want:  []int{Lowat},
		},
		{
			name: "reads slower than the window never batch",
			reads: slices.Concat(
				repeat(100, read{after: 10 * time.Microsecond, n: 8 << 10}),
				[]read{{after: Window, n: 8 << 10}},
				repeat(100, read{after: 10 * time.Microsecond, n: 8 << 10})),
			wait: time.Second,
			want: nil,
		},
		{
			name: "a pause ends batching and a second burst starts it again",
			reads: slices.Concat(
				repeat(200, read{after: 10 * time.Microsecond, n: 8 << 10}),
				[]read{{after: 10 * time.Millisecond, n: 100}},
				repeat(200, read{after: 10 * time.Microsecond, n: 8 << 10})),
			wait: time.Second,
			want: []int{Lowat, 1, Lowat, 1},
		},
		{
			name:  "a socket that refuses the option is read as before",
			reads: repeat(400, read{after: 20 * time.Microsecond, n: 8 << 10}),
			fail:  true,
			wait:  time.Second,
			want:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &lowatRecorder{fail: tt.fail}
				b := &Batcher{setLowat: rec.setLowat}
				for _, r := range tt.reads {
					time.Sleep(r.after)
					b.Observe(r.n)
				}
				time.Sleep(tt.wait)
				synctest.Wait()
				if got := rec.calls(); !slices.Equal(got, tt.want) {
					t.Errorf("SO_RCVLOWAT set to %v, want %v", got, tt.want)
				}
			})
		})
	}
}
