package pipedrain

import (
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

func TestWaitCutsAReadThatNeverEnds(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close() // held open: the reader never sees EOF by itself
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, r)
	}()
	start := time.Now()
	Wait(&wg, 50*time.Millisecond, r)
	if el := time.Since(start); el < 50*time.Millisecond || el > 5*time.Second {
		t.Fatalf("Wait returned after %v", el)
	}
}

func TestWaitReturnsWhenTheCopiersFinish(t *testing.T) {
	var wg sync.WaitGroup
	start := time.Now()
	Wait(&wg, time.Minute)
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Wait returned after %v", el)
	}
}
