//go:build unix

package demo

import "syscall"

// childAttr puts servers in their own process group, so a Ctrl-C in the
// terminal reaches only the demo, which then stops them in order.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
