// Package lockmap holds one mutex per key, so that operations on one
// sandbox or container are serialised without blocking the others.
package lockmap

import "sync"

// Map is a set of mutexes by key, made on first use. The zero Map is ready.
type Map struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Lock holds key's mutex and returns the function that releases it.
func (m *Map) Lock(key string) (unlock func()) {
	m.mu.Lock()
	l, ok := m.locks[key]
	if !ok {
		if m.locks == nil {
			m.locks = map[string]*sync.Mutex{}
		}
		l = &sync.Mutex{}
		m.locks[key] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Delete forgets key's mutex, once what it guarded is gone.
func (m *Map) Delete(key string) {
	m.mu.Lock()
	delete(m.locks, key)
	m.mu.Unlock()
}
