package nodeagent

import "syscall"

// relaySysProcAttr makes a relay process die with the agent, as a pod's
// containers stop being served when their kubelet is gone: the agent's
// restart then starts it afresh.
func relaySysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
