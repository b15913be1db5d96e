package events

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Step is how far along its lifecycle a container or pod is; the events
// between two steps are the ones a subscriber must see.
type Step int

// The steps. A pod is Started when ready and Stopped when not ready; it
// has no Created step of its own.
const (
	StepNone    Step = 0 // not visible yet (being created)
	StepCreated Step = 1
	StepStarted Step = 2
	StepStopped Step = 3
)

// Object is one container or pod as the poller sees it; a pod's SandboxID
// is its own ID.
type Object struct {
	ID, SandboxID string
	Step          Step
}

// Source lists the node's pods and containers from the store, the one
// truth about them.
type Source interface {
	Sandboxes() ([]Object, error)
	Containers() ([]Object, error)
}

// PollInterval is how often the poller diffs while anyone subscribes.
const PollInterval = time.Second

// Poller turns state changes of containers and pods into events by diffing
// the store against its last snapshot. One diff covers every way a state
// changes (an RPC, a container exiting on its own, a pod stop taking its
// containers with it), so the domain packages need no event hooks.
// Reconcile runs right after each lifecycle RPC, and Run every
// PollInterval while anyone subscribes, to catch exits nobody asked for.
type Poller struct {
	broker *Broker
	src    Source
	log    *slog.Logger

	mu         sync.Mutex // serialises diffs, so events keep their order
	primed     bool
	containers map[string]Object
	sandboxes  map[string]Object
}

// NewPoller returns a Poller publishing to b what it learns from src.
func NewPoller(b *Broker, src Source, log *slog.Logger) *Poller {
	if log == nil {
		log = slog.Default()
	}
	return &Poller{broker: b, src: src, log: log}
}

// Broker is where the poller publishes.
func (p *Poller) Broker() *Broker { return p.broker }

// Reconcile publishes the changes since the last call. With nobody
// subscribed it only forgets the snapshot: the next subscriber starts from
// a fresh baseline instead of a burst of stale events.
func (p *Poller) Reconcile() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broker.Subscribers() == 0 {
		p.primed = false
		return
	}
	cs, err := p.src.Containers()
	if err != nil {
		p.log.Debug("events: list containers", "error", err)
		return
	}
	sbs, err := p.src.Sandboxes()
	if err != nil {
		p.log.Debug("events: list sandboxes", "error", err)
		return
	}
	nc := snapshot(cs)
	ns := snapshot(sbs)
	if p.primed {
		now := time.Now()
		// Pods before their containers when they appear, after when they go.
		p.changed(p.sandboxes, ns, now)
		p.changed(p.containers, nc, now)
		p.gone(p.containers, nc, now)
		p.gone(p.sandboxes, ns, now)
	}
	p.containers, p.sandboxes, p.primed = nc, ns, true
}

func snapshot(objs []Object) map[string]Object {
	out := make(map[string]Object, len(objs))
	for _, o := range objs {
		if o.Step != StepNone {
			out[o.ID] = o
		}
	}
	return out
}

// changed publishes creations and state changes from old to cur, one event
// per step passed, so a container created and started between two diffs
// is reported as both.
func (p *Poller) changed(old, cur map[string]Object, now time.Time) {
	for id, c := range cur {
		from := StepNone
		if o, ok := old[id]; ok {
			from = o.Step
		}
		for step := from + 1; step <= c.Step; step++ {
			p.broker.Publish(Event{ContainerID: id, SandboxID: c.SandboxID, Type: Type(step - 1), Time: now})
		}
	}
}

// gone publishes the deletions from old to cur.
func (p *Poller) gone(old, cur map[string]Object, now time.Time) {
	for id, o := range old {
		if _, ok := cur[id]; ok {
			continue
		}
		// Started and gone before a diff saw it stop (a quick exit then a
		// remove): it did stop, and the kubelet's PLEG needs to know.
		if o.Step == StepStarted {
			p.broker.Publish(Event{ContainerID: id, SandboxID: o.SandboxID, Type: Stopped, Time: now})
		}
		p.broker.Publish(Event{ContainerID: id, SandboxID: o.SandboxID, Type: Deleted, Time: now})
	}
}

// Run diffs every PollInterval until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.Reconcile()
	}
}
