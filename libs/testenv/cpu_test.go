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
