// Package pipedrain ends the copying of a process's output: the copiers get
// a while to read what is left, then their reads are cut, since a child
// the process left behind may hold the pipes open forever.
package pipedrain

import (
	"os"
	"sync"
	"time"
)

// Wait waits for wg; past d it makes the pending reads on files fail.
func Wait(wg *sync.WaitGroup, d time.Duration, files ...*os.File) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(d):
	}
	for _, f := range files {
		f.SetReadDeadline(time.Now())
	}
	<-done
}
