package realize

import (
	"container/heap"
	"context"
	"sync"

	"hephc.dev/hephc/store"
)

// priorities ranks the derivations to build by the work that waits on
// them: a derivation's weight is its own estimated cost plus the largest
// weight among the derivations in todo that use it, so the longest chain
// to a root starts first (critical-path scheduling). The cost of a build
// is estimated by what it takes in: 1 plus its fixed-output inputs (the
// sources and modules it compiles or unpacks); a fetch costs 1; after
// adds the work outside the graph that waits for a derivation. todo is
// in dependency order (inputs first), as Graph.Closure gives it.
func priorities(g *store.Graph, todo []store.DrvHash, after map[store.DrvHash]int) map[store.DrvHash]int {
	in := make(map[store.DrvHash]bool, len(todo))
	for _, h := range todo {
		in[h] = true
	}
	users := make(map[store.DrvHash][]store.DrvHash, len(todo))
	for _, h := range todo {
		for _, ih := range g.Derivations[h].Inputs {
			if in[ih] {
				users[ih] = append(users[ih], h)
			}
		}
	}
	w := make(map[store.DrvHash]int, len(todo))
	for i := len(todo) - 1; i >= 0; i-- {
		h := todo[i]
		most := 0
		for _, u := range users[h] {
			most = max(most, w[u])
		}
		w[h] = cost(g, h) + after[h] + most
	}
	return w
}

func cost(g *store.Graph, h store.DrvHash) int {
	d := g.Derivations[h]
	if d.IsFixedOutput() {
		return 1
	}
	n := 1
	for _, ih := range d.Inputs {
		if in, ok := g.Derivations[ih]; ok && in.IsFixedOutput() {
			n++
		}
	}
	return n
}

// scheduler runs the derivations of todo, each once every input of its
// in todo has ended, in a slot of its kind (builds, fetches), the ready
// one of highest priority first. One dispatcher decides: when a
// derivation ends, the ones it made ready are queued before its slot is
// handed on, so a slot never goes to whichever goroutine runs first.
type scheduler struct {
	ctx     context.Context
	g       *store.Graph
	prio    map[store.DrvHash]int
	users   map[store.DrvHash][]store.DrvHash
	waiting map[store.DrvHash]int // inputs in todo that have not ended
	builds  *pool
	fetches *pool
	// run builds h holding a slot; release frees the slot before run
	// returns (its registration goes on while the next build runs).
	run func(h store.DrvHash, release func())

	mu  sync.Mutex
	seq int
	wg  sync.WaitGroup
}

// pool is a kind of slot: how many are free, and what is ready for one.
type pool struct {
	free  int
	ready waiters
}

func newScheduler(ctx context.Context, g *store.Graph, todo []store.DrvHash, after map[store.DrvHash]int, jobs, fetchJobs int, run func(store.DrvHash, func())) *scheduler {
	s := &scheduler{
		ctx: ctx, g: g, prio: priorities(g, todo, after), run: run,
		users: make(map[store.DrvHash][]store.DrvHash, len(todo)), waiting: make(map[store.DrvHash]int, len(todo)),
		builds: &pool{free: jobs}, fetches: &pool{free: fetchJobs},
	}
	in := make(map[store.DrvHash]bool, len(todo))
	for _, h := range todo {
		in[h] = true
	}
	for _, h := range todo {
		for _, ih := range g.Derivations[h].Inputs {
			if in[ih] {
				s.users[ih] = append(s.users[ih], h)
				s.waiting[h]++
			}
		}
	}
	return s
}

// runAll runs todo and returns when every derivation started has ended.
// Once ctx ends, nothing more starts.
func (s *scheduler) runAll(todo []store.DrvHash) {
	s.mu.Lock()
	for _, h := range todo {
		if s.waiting[h] == 0 {
			s.queue(h)
		}
	}
	s.dispatch()
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *scheduler) poolOf(h store.DrvHash) *pool {
	if s.g.Derivations[h].IsFixedOutput() {
		return s.fetches
	}
	return s.builds
}

// queue puts h among the ready. s.mu is held.
func (s *scheduler) queue(h store.DrvHash) {
	heap.Push(&s.poolOf(h).ready, &waiter{h: h, prio: s.prio[h], seq: s.seq})
	s.seq++
}

// dispatch starts what is ready while slots are free. s.mu is held.
func (s *scheduler) dispatch() {
	if s.ctx.Err() != nil {
		return
	}
	for _, p := range []*pool{s.builds, s.fetches} {
		for p.free > 0 && len(p.ready) > 0 {
			w := heap.Pop(&p.ready).(*waiter)
			p.free--
			s.wg.Add(1)
			go s.exec(w.h, p)
		}
	}
}

func (s *scheduler) exec(h store.DrvHash, p *pool) {
	defer s.wg.Done()
	released := false // guarded by s.mu
	s.run(h, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !released {
			released = true
			p.free++
			s.dispatch()
		}
	})
	// What h made ready is queued before its slot (if it still holds
	// it) is handed on.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users[h] {
		if s.waiting[u]--; s.waiting[u] == 0 {
			s.queue(u)
		}
	}
	if !released {
		released = true
		p.free++
	}
	s.dispatch()
}

type waiter struct {
	h         store.DrvHash
	prio, seq int
}

// waiters is a heap: the highest priority, then the earliest, first.
type waiters []*waiter

func (q waiters) Len() int { return len(q) }
func (q waiters) Less(i, j int) bool {
	if q[i].prio != q[j].prio {
		return q[i].prio > q[j].prio
	}
	return q[i].seq < q[j].seq
}
func (q waiters) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *waiters) Push(x any)   { *q = append(*q, x.(*waiter)) }
func (q *waiters) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return w
}
