package broadcast

import "testing"

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNotifyWakesEveryWaiterOfTheChangeOnce(t *testing.T) {
	var c Changes
	a, b := c.Next(), c.Next()
	if closed(a) || closed(b) {
		t.Fatal("a channel is closed before any change")
	}
	c.Notify()
	if !closed(a) || !closed(b) {
		t.Fatal("Notify did not wake every waiter")
	}
	next := c.Next()
	if closed(next) {
		t.Fatal("the channel of the change after Notify is already closed")
	}
	c.Notify()
	if !closed(next) {
		t.Fatal("the second Notify did not wake the next waiter")
	}
}

func TestNotifyBeforeAnyWaiterIsNotRemembered(t *testing.T) {
	var c Changes
	c.Notify()
	if closed(c.Next()) {
		t.Fatal("a waiter that came after the change was woken by it")
	}
}
