// Package lockmap holds one lock per key, so that operations on one
// sandbox or container are serialised without blocking the others.
//
// Entries are reference-counted: an entry lives while someone holds or
// waits on it, and goes away with the last of them. So there is never a
// second lock for a key while the first is held or awaited, and the map
// does not grow with every ID the daemon ever saw.
package lockmap

import (
	"context"
	"sync"
)

// Map is a set of locks by key. The zero Map is ready.
type Map struct {
	mu    sync.Mutex
	locks map[string]*entry
}

type entry struct {
	// held has room for one token: whoever put it there holds the lock.
	// A channel rather than a sync.Mutex so that waiting honours a context.
	held chan struct{}
	// refs counts holders and waiters; guarded by Map.mu.
	refs int
}

// LockContext waits for key's lock, or for ctx to end, and returns the
// function that releases it. Calling unlock more than once releases it once.
func (m *Map) LockContext(ctx context.Context, key string) (unlock func(), err error) {
	e := m.acquire(key)
	// A done context wins over a free lock, so a cancelled caller never
	// goes on to act.
	if err := ctx.Err(); err != nil {
		m.release(key, e)
		return nil, err
	}
	select {
	case e.held <- struct{}{}:
	case <-ctx.Done():
		m.release(key, e)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.held
			m.release(key, e)
		})
	}, nil
}

// TryLock takes key's lock only if it is free at once.
func (m *Map) TryLock(key string) (unlock func(), ok bool) {
	e := m.acquire(key)
	select {
	case e.held <- struct{}{}:
	default:
		m.release(key, e)
		return nil, false
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.held
			m.release(key, e)
		})
	}, true
}

// Lock is LockContext for callers that have no context to honour: it
// waits as long as it takes.
func (m *Map) Lock(key string) (unlock func()) {
	unlock, _ = m.LockContext(context.Background(), key)
	return unlock
}

func (m *Map) acquire(key string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.locks[key]
	if !ok {
		if m.locks == nil {
			m.locks = map[string]*entry{}
		}
		e = &entry{held: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	return e
}

func (m *Map) release(key string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(m.locks, key)
	}
}

// Refs is the number of holders and waiters of key.
func (m *Map) Refs(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.locks[key]; e != nil {
		return e.refs
	}
	return 0
}

// Len is the number of keys held or awaited.
func (m *Map) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}
