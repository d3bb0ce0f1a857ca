package testenv_test

import (
	"os"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/testenv"
)

func TestProcessCPU(t *testing.T) {
	before, err := testenv.ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has charged at least two more ticks.
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, err := testenv.ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time still %v after 10 s of spinning (from %v)", after, before)
		}
	}
	if _, err := testenv.ProcessCPU(-1); err == nil {
		t.Error("ProcessCPU(-1) gave no error")
	}
}

func TestMachineCPU(t *testing.T) {
	before, err := testenv.MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	own, err := testenv.ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// This process's own spinning is part of the machine's time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		now, err := testenv.ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-own >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no CPU time charged after 10 s of spinning")
		}
	}
	after, err := testenv.MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 40*time.Millisecond {
		t.Errorf("the machine's CPU time grew by %v while this process spun for 50 ms", after-before)
	}
}
