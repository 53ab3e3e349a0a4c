// Command pause is the real node's sandbox image: the process that holds a pod's namespaces.
//
// It does nothing but wait: it exits on SIGINT or SIGTERM (so stopping a pod is quick) and,
// as PID 1 of the pod's PID namespace when that is shared, reaps the children it inherits.
// Written for Tailor's local stack, where no public pause image can be pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
