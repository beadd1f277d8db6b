// Package broadcast announces "something changed" to any number of
// waiters.
package broadcast

import "sync"

// Changes announces changes to any number of waiters. A waiter takes the
// channel of the next change (Next) before it looks at the state it
// watches, so that a change made while it looks still wakes it. The zero
// value is ready to use; a Changes must not be copied after first use.
type Changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// Next returns a channel closed at the next Notify.
func (c *Changes) Next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// Notify wakes every waiter of the channel Next returns until now. Without
// waiters it allocates nothing: the next Next makes the next channel.
func (c *Changes) Notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}
