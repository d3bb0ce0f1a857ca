package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel stop the all-in-one if the test process
// dies first (a panic, a timeout), instead of leaving it running.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
