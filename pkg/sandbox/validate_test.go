package sandbox

import (
	"errors"
	"testing"
)

func TestValidateSysctls(t *testing.T) {
	podNS := Namespaces{}
	hostNet := Namespaces{Network: ModeNode}
	hostIPC := Namespaces{IPC: ModeNode}
	tests := []struct {
		name    string
		sysctls map[string]string
		ns      Namespaces
		ok      bool
	}{
		{"none", nil, podNS, true},
		{"net in pod netns", map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net.core.somaxconn": "1024"}, podNS, true},
		{"ipc in pod ipc ns", map[string]string{"kernel.shmmax": "1000000", "kernel.msgmax": "8192", "kernel.sem": "250 32000 32 128", "fs.mqueue.msg_max": "20"}, podNS, true},
		{"domainname", map[string]string{"kernel.domainname": "example"}, podNS, true},
		{"net with host network", map[string]string{"net.ipv4.ip_forward": "1"}, hostNet, false},
		{"ipc with host network is fine", map[string]string{"kernel.shmmax": "1000000"}, hostNet, true},
		{"net with host ipc is fine", map[string]string{"net.core.somaxconn": "1024"}, hostIPC, true},
		{"shm with host ipc", map[string]string{"kernel.shmmax": "1000000"}, hostIPC, false},
		{"msg with host ipc", map[string]string{"kernel.msgmnb": "1"}, hostIPC, false},
		{"sem with host ipc", map[string]string{"kernel.sem": "1 1 1 1"}, hostIPC, false},
		{"mqueue with host ipc", map[string]string{"fs.mqueue.queues_max": "1"}, hostIPC, false},
		{"domainname with host network", map[string]string{"kernel.domainname": "x"}, hostNet, false},
		{"not namespaced", map[string]string{"kernel.panic": "1"}, podNS, false},
		{"vm", map[string]string{"vm.swappiness": "1"}, podNS, false},
		{"hostname through sysctl", map[string]string{"kernel.hostname": "x"}, podNS, false},
		{"slashes", map[string]string{"net/ipv4/ip_forward": "1"}, podNS, false},
		{"path escape", map[string]string{"net...x": "1"}, podNS, false},
		{"empty name", map[string]string{"": "1"}, podNS, false},
		{"newline in value", map[string]string{"net.core.somaxconn": "1\n2"}, podNS, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validate(Config{Name: "p", Namespace: "ns", Sysctls: tt.sysctls, Namespaces: tt.ns})
			if tt.ok && err != nil {
				t.Fatalf("validate: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate = %v, want ErrInvalid", err)
			}
		})
	}
}
