package cputime_test

import (
	"os"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/cputime"
)

// spin keeps this process busy until the kernel has charged it at least
// d more CPU time.
func spin(t *testing.T, d time.Duration) {
	t.Helper()
	before, err := cputime.Process(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := cputime.Process(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= d {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time still %v after 10 s of spinning (from %v)", now, before)
		}
	}
}

func TestProcess(t *testing.T) {
	spin(t, 20*time.Millisecond) // two ticks, read through Process
	if _, err := cputime.Process(-1); err == nil {
		t.Error("ProcessCPU(-1) gave no error")
	}
}

func TestMachine(t *testing.T) {
	before, err := cputime.Machine()
	if err != nil {
		t.Fatal(err)
	}
	// This process's own spinning is part of the machine's time.
	spin(t, 50*time.Millisecond)
	after, err := cputime.Machine()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 40*time.Millisecond {
		t.Errorf("the machine's CPU time grew by %v while this process spun for 50 ms", after-before)
	}
}

func TestOwn(t *testing.T) {
	before := cputime.Own(t)
	// spin reads /proc in 10 ms ticks, so 30 ms of it may be as little as
	// 20 ms of the exact time Own reads.
	spin(t, 30*time.Millisecond)
	if got := cputime.Own(t) - before; got < 15*time.Millisecond {
		t.Errorf("Own grew by %v while this process spun for 30 ms", got)
	}
}
