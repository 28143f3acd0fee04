package fstree

import "sync"

// A jobQueue hands files from the walker to the workers. Unlike a channel,
// it costs no wake-up per file while work is plentiful: the walker queues
// a directory's files at once and waits only when far ahead (highWater
// jobs), until the workers are down to lowWater; a worker waits only when
// the queue is empty. The order of jobs does not matter.
type jobQueue struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	jobs     []job // a stack
	closed   bool
}

const (
	highWater = 8192
	lowWater  = highWater / 2
)

func newJobQueue() *jobQueue {
	q := &jobQueue{}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	return q
}

func (q *jobQueue) push(batch []job) {
	if len(batch) == 0 {
		return
	}
	q.mu.Lock()
	for len(q.jobs) >= highWater {
		q.notFull.Wait()
	}
	q.jobs = append(q.jobs, batch...)
	q.mu.Unlock()
	q.notEmpty.Broadcast()
}

// pop returns a job, or false once the queue is closed and empty.
func (q *jobQueue) pop() (job, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) == 0 && !q.closed {
		q.notEmpty.Wait()
	}
	n := len(q.jobs)
	if n == 0 {
		return job{}, false
	}
	j := q.jobs[n-1]
	q.jobs[n-1] = job{}
	q.jobs = q.jobs[:n-1]
	if n-1 == lowWater {
		q.notFull.Signal()
	}
	return j, true
}

// close tells the workers that no more jobs will come.
func (q *jobQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.notEmpty.Broadcast()
}
