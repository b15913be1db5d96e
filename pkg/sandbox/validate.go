package sandbox

import (
	"fmt"
	"strings"
)

func validate(c Config) error {
	if c.Name == "" {
		return fmt.Errorf("metadata.name is empty: %w", ErrInvalid)
	}
	if c.Namespace == "" {
		return fmt.Errorf("metadata.namespace is empty: %w", ErrInvalid)
	}
	if strings.ContainsAny(c.Name+c.Namespace+c.UID, "/\x00") {
		return fmt.Errorf("metadata contains '/' or NUL: %w", ErrInvalid)
	}
	if err := validateUserNS(c); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	for k, v := range c.Sysctls {
		if err := validateSysctl(k, v, c.Namespaces); err != nil {
			return fmt.Errorf("%w: %w", err, ErrInvalid)
		}
	}
	return nil
}

// validateSysctl admits only sysctls a pod's own namespaces scope, as the
// kubelet and runc do: any other would change the node for every pod.
func validateSysctl(key, value string, ns Namespaces) error {
	if key == "" || strings.ContainsAny(key, "/ \x00") || strings.Contains(key, "..") ||
		strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") {
		return fmt.Errorf("sysctl %q: not a sysctl name (use dots, e.g. net.ipv4.ip_forward)", key)
	}
	if strings.ContainsAny(value, "\x00\n") {
		return fmt.Errorf("sysctl %s: value %q contains NUL or newline", key, value)
	}
	switch {
	case key == "kernel.sem" || strings.HasPrefix(key, "kernel.shm") ||
		strings.HasPrefix(key, "kernel.msg") || strings.HasPrefix(key, "fs.mqueue."):
		if ns.IPC == ModeNode {
			return fmt.Errorf("sysctl %s is not allowed in a pod that uses the host's IPC namespace", key)
		}
	case strings.HasPrefix(key, "net."):
		if ns.Network == ModeNode {
			return fmt.Errorf("sysctl %s is not allowed in a pod that uses the host's network", key)
		}
	case key == "kernel.domainname":
		// UTS is the pod's own unless it is on the host network.
		if ns.Network == ModeNode {
			return fmt.Errorf("sysctl %s is not allowed in a pod that uses the host's network (and UTS namespace)", key)
		}
	default:
		return fmt.Errorf("sysctl %s is not namespaced: setting it in a pod would change the node", key)
	}
	return nil
}
